"""What `orchestrator run` measures (docs/metrics.md): its own figures every period (an
`orchestrator.metrics` event and the Prometheus textfile), and with METRICS_SECONDS the sites':
the reporter (samples, Traefik and the swarm's sites into `site.metrics` and `node.metrics`),
the queues that feed it, and this node's collector (METRICS_COLLECTOR)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.bus.broker import Send, user_of
from orchestrator.bus.receiver import Processor
from orchestrator.config import Settings
from orchestrator.labels import DEPLOYMENT, SITE_ID
from orchestrator.logging_setup import fields
from orchestrator.metrics.cgroups import Hierarchy
from orchestrator.metrics.collector import Collector, next_pass
from orchestrator.metrics.figures import Figures, FileTotals, write_textfile
from orchestrator.metrics.processor import CollectorSamples, MetricsRequests
from orchestrator.metrics.reporter import MetricsReporter, Site
from orchestrator.metrics.samples import NodeSample
from orchestrator.sites.service import Service
from orchestrator.swarm.changes import DockerChanges
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.containers import NodeContainers
from orchestrator.swarm.services import Swarm
from orchestrator.traefik.metrics import TraefikMetrics
from orchestrator_contract.metrics import NodeMetrics, OrchestratorMetrics, SiteMetrics

log = logging.getLogger("orchestrator.metrics")
SAMPLE_KEY = "sample"


Publisher = Callable[..., Send]  # `bus.broker.publisher` on a connection: (exchange, user_id=, expiration=)


class Metering:
    def __init__(
        self,
        settings: Settings,
        swarm: Swarm,
        publisher: Publisher,
        depths: Callable[[list[str]], Awaitable[dict[str, int]]],
        file_totals: FileTotals | None = None,
    ) -> None:
        """`depths`: queue name -> messages waiting. Events go without confirms, not persistent,
        gone from any queue after two periods unread (a consumer that was away gets the latest,
        not a backlog); samples as this process's broker user, kept longer (their counts are in
        no other sample)."""
        self.settings = settings
        self.figures = Figures(file_totals=file_totals)
        self._events = publisher(settings.results_exchange, expiration=2 * settings.metrics_seconds)
        user = user_of(settings.amqp_url)
        self._samples = publisher(
            settings.collector_exchange, user_id=user, expiration=settings.sample_lifetime_seconds
        )
        self._depths = depths
        metrics = settings.traefik_api_url.rstrip("/") + "/metrics" if settings.traefik_api_url else ""
        self._traefik = TraefikMetrics(metrics) if metrics and settings.metrics_seconds else None
        self.reporter = (
            MetricsReporter(
                self._sites(swarm), self._scrape, self.publish, deployment=settings.deployment,
                period=settings.metrics_seconds, active=asyncio.Event(),
                sample_lifetime=settings.sample_lifetime_seconds,
            )
            if settings.metrics_seconds
            else None
        )  # fmt: skip

    def processors(self) -> dict[str, Processor[Any]]:
        """The metrics queues' processors (none without METRICS_SECONDS): `app.bindings` names them."""
        if self.reporter is None:
            return {}
        requests = MetricsRequests(self.reporter, self.settings.files_reply_queue_prefix)
        return {"metrics": requests, "samples": CollectorSamples(self.reporter)}

    def start(
        self, active: asyncio.Event, docker: DockerClient, changes: DockerChanges
    ) -> list[Coroutine[Any, Any, None]]:
        """The background work, once `active` (this replica consumes the site events) is known."""
        if self.reporter is None:
            return []
        self.reporter.active = active  # publishes while this replica is the active one
        work = [self.reporter.run(), report_figures(self.figures, self.settings, self._queues, self.publish, active)]
        if self.settings.metrics_collector:
            # Sends while active too: two replicas on one node count once.
            collector = collector_of(self.settings, docker, self.send_sample, active)
            changes.listen(collector.on_change)
            work.append(collector.run())
        return work

    async def close(self) -> None:
        if self._traefik is not None:
            await self._traefik.close()

    async def publish(self, event: SiteMetrics | NodeMetrics | OrchestratorMetrics) -> bool:
        return await self._events(event.type, event.model_dump_json().encode(), str(event.event_id))

    async def send_sample(self, sample: NodeSample) -> bool:
        return await self._samples(SAMPLE_KEY, sample.model_dump_json().encode(), None)

    async def _scrape(self) -> dict[str, str]:
        return await self._traefik.scrape() if self._traefik is not None else {}

    async def _queues(self) -> dict[str, int]:
        s = self.settings
        names = [s.work_queue, s.retry_queue, s.dead_letter_queue, s.terminal_queue, s.files_queue, s.metrics_queue]
        return await self._depths(names + ([s.results_queue] if s.results_queue else []))

    def _sites(self, swarm: Swarm) -> Callable[[], Awaitable[list[Site]]]:
        async def sites() -> list[Site]:
            return sites_of(await swarm.managed(), self.settings.deployment)

        return sites


def collector_of(
    settings: Settings,
    docker: DockerClient,
    send: Callable[[NodeSample], Awaitable[bool]],
    active: asyncio.Event | None,
) -> Collector:
    """This node's collector (inside `orchestrator run`, or alone: `orchestrator collect`)."""
    root = settings.metrics_host_root
    return Collector(
        NodeContainers(docker),
        Hierarchy(root / "sys" / "fs" / "cgroup", root / "proc"),
        send,
        period=settings.metrics_seconds,
        sites_root=settings.sites_root,
        active=active,
    )


def sites_of(services: list[Service], deployment: str) -> list[Site]:
    """This deployment's sites among the managed services (others of the swarm are another's)."""
    return [
        Site(int(s.labels[SITE_ID]), s.name, s.running or 0)
        for s in services
        if s.labels.get(DEPLOYMENT) == deployment and s.labels.get(SITE_ID, "").isdigit()
    ]


def collector_problems(events: bool, last_pass: float | None, running: float, period: float) -> list[str]:
    """What makes `orchestrator collect` unhealthy: Docker's events unheard (OOM kills and
    restarts would go uncounted), or no pass for three periods (`last_pass`: epoch seconds)."""
    found = [] if events else ["docker's event stream is not connected"]
    late = 3 * period
    if (last_pass is None and running > late) or (last_pass is not None and time.time() - last_pass > late):
        found.append(f"no metrics pass for {late:.0f} s")
    return found


async def report_figures(
    figures: Figures,
    settings: Settings,
    depths: Callable[[], Awaitable[dict[str, int]]],
    publish: Callable[[OrchestratorMetrics], Awaitable[bool]],
    active: asyncio.Event,
) -> None:
    """Every period on the grid: the window's `orchestrator.metrics` (every replica, its own), and
    the textfile when METRICS_TEXTFILE is set."""
    start = time.time()
    while True:
        at = next_pass(time.time(), settings.metrics_seconds)
        await asyncio.sleep(max(0.0, at - time.time()))
        try:
            figures.queues = await depths()
        except Exception as exc:  # the broker away: the figures go out without depths
            log.warning("could not read the queues' depths", extra=fields(error=repr(exc)[:200]))
            figures.queues = {}
        event = figures.close(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(at, UTC), active.is_set())
        start = at
        await publish(event)
        if settings.metrics_textfile is not None:
            await _write(settings.metrics_textfile, figures.textfile(active.is_set()))


async def _write(path: Path, text: str) -> None:
    try:
        await asyncio.to_thread(write_textfile, path, text)
    except OSError as exc:
        log.warning("could not write the metrics textfile", extra=fields(path=str(path), error=str(exc)))
