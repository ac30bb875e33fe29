"""The orchestrator's side: every period, the collectors' samples, Traefik's counters and the
swarm's sites become one `site.metrics` per site and one `node.metrics` per node.

Every replica does it (the standby too, so a takeover finds windows and baselines ready); only
the active one publishes. Windows are named by their end on the wall clock's grid and events of
a window carry an id derived from site and end, so two replicas around a takeover produce the
same events and a duplicate is one event twice, never a window counted twice.

The events of a period are spread over half of it (a thousand sites at the default 60 s: about
33 a second), so the broker never sees the fleet's events at once. Under load no window's counts
are dropped: late samples and those of grid points whose merge never came count in the next
window, and a period's events still going out when the next are ready go at once. The latest
windows stay in memory for `metrics.*` requests: bounded by the sites the swarm holds and by
`max_nodes`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.errors import OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.metrics.collector import next_pass
from orchestrator.metrics.samples import NodeSample, TaskWindow
from orchestrator.metrics.served import Scrapes, Served, parse
from orchestrator_contract.metrics import (
    DiskSpace,
    Latency,
    NodeMetrics,
    SiteMetrics,
    SiteState,
    SiteUsage,
    Window,
    metrics_event_id,
)

log = logging.getLogger("orchestrator.metrics")
SPREAD_FRACTION = 0.5
WINDOWS_KEPT = 3  # sample windows held while their merge is due


@dataclass(frozen=True)
class Site:
    """A site as the swarm holds it at the merge."""

    site_id: int
    service: str
    running: int  # tasks the swarm counts running


Sites = Callable[[], Awaitable[list[Site]]]
Scrape = Callable[[], Awaitable[dict[str, str]]]  # Traefik instance -> its metrics text
Publish = Callable[[SiteMetrics | NodeMetrics], Awaitable[bool]]


def _grid_key(at: float) -> float:
    """A window's end as a key: to the millisecond (it went through JSON's microseconds)."""
    return round(at, 3)


def site_metrics(
    site: Site, entries: list[tuple[NodeSample, TaskWindow]], served: Served | None, window: Window, deployment: str
) -> SiteMetrics:
    """Pure: one site's event from its entries in the nodes' samples and what Traefik served."""
    tasks = sum(e.tasks for _, e in entries)
    state: SiteState = "running" if tasks else ("unmeasured" if site.running else "no_task")
    if entries:
        start = min(s.start for s, _ in entries)
        window = Window(start=start, end=window.end, seconds=(window.end - start).total_seconds())
    usage = _usage([e for _, e in entries if e.tasks], window.seconds) if tasks else None
    return SiteMetrics(
        event_id=metrics_event_id(deployment, f"site:{site.site_id}", window.end),
        site_id=site.site_id,
        window=window,
        state=state,
        tasks=tasks,
        nodes=sorted({s.hostname for s, e in entries if e.tasks}),
        usage=usage,
        oom_kills=sum(e.oom_kills for _, e in entries),
        restarts=sum(e.restarts for _, e in entries),
        requests=served.by_class() if served else {},
        latency_ms=Latency(**percentiles) if served and (percentiles := served.percentiles_ms()) else None,
    )


def _usage(entries: list[TaskWindow], seconds: float) -> SiteUsage:
    cpu = sum(e.cpu_seconds for e in entries)
    limit = next((e.cpu_limit for e in entries if e.cpu_limit), None)
    # Limits are per task: several tasks (replicas, or a rollout's two) may use that much each.
    capacity = limit * sum(e.tasks for e in entries) if limit else None
    return SiteUsage(
        cpu_seconds=round(cpu, 4),
        cpu_limit=limit,
        cpu_share=round(cpu / (seconds * capacity), 4) if capacity and seconds > 0 else None,
        cpu_throttled_seconds=round(sum(e.cpu_throttled_seconds for e in entries), 4),
        memory_bytes=sum(e.memory_bytes for e in entries),
        memory_limit_bytes=next((e.memory_limit_bytes for e in entries if e.memory_limit_bytes), None),
        pids=sum(e.pids for e in entries),
        network_rx_bytes=sum(e.net_rx_bytes for e in entries),
        network_tx_bytes=sum(e.net_tx_bytes for e in entries),
        block_read_bytes=sum(e.io_read_bytes for e in entries),
        block_write_bytes=sum(e.io_write_bytes for e in entries),
    )


def node_metrics(sample: NodeSample, deployment: str) -> NodeMetrics | None:
    node = sample.node
    if node is None:
        return None
    seconds = (sample.end - sample.start).total_seconds()
    disk = None
    if node.disk_total_bytes is not None and node.disk_free_bytes is not None:
        disk = DiskSpace(total_bytes=node.disk_total_bytes, free_bytes=node.disk_free_bytes)
    return NodeMetrics(
        event_id=metrics_event_id(deployment, f"node:{sample.node_id}", sample.end),
        node_id=sample.node_id,
        hostname=sample.hostname,
        window=Window(start=sample.start, end=sample.end, seconds=seconds),
        cpus=node.cpus,
        cpu_seconds=round(node.cpu_seconds, 3),
        cpu_share=round(node.cpu_seconds / (seconds * node.cpus), 4) if node.cpus and seconds > 0 else None,
        memory_total_bytes=node.memory_total_bytes,
        memory_available_bytes=node.memory_available_bytes,
        sites_root=disk,
        sites_running=node.sites_running,
    )


class MetricsReporter:
    def __init__(
        self,
        sites: Sites,
        scrape: Scrape,
        publish: Publish,
        *,
        deployment: str,
        period: float,
        active: asyncio.Event | None,
        settle_seconds: float | None = None,
        spread_fraction: float = SPREAD_FRACTION,
        max_nodes: int = 1000,
        sample_lifetime: float = 0.0,
    ) -> None:
        """`sample_lifetime`: how long a sample may wait in the broker (`Settings.
        sample_lifetime_seconds`); which node's parts a window merged is remembered that long, so
        a copy that comes later than the rest of its window still counts once."""
        self._sites = sites
        self._scrape = scrape
        self.publish = publish
        self._deployment = deployment
        self._period = period
        # Publishes while set (None: always); `orchestrator run` sets the site consumer's here.
        self.active = active
        # Samples are sent at the grid point; they are merged this much later.
        self._settle = min(10.0, period / 4) if settle_seconds is None else settle_seconds
        self._spread = period * spread_fraction
        self._max_nodes = max_nodes
        self._scrapes = Scrapes()
        self._samples: dict[float, dict[tuple[str, int], NodeSample]] = {}  # window end -> (node, part) -> sample
        self._merged_until = 0.0
        self._memory = max(WINDOWS_KEPT * period, sample_lifetime + period)
        self._merged: dict[float, set[tuple[str, int]]] = {}  # window end -> (node, part) merged
        self._late: list[NodeSample] = []
        self._site_ids: list[int] = []  # sorted, for pages
        self._latest: dict[int, SiteMetrics] = {}
        self._nodes: dict[str, NodeMetrics] = {}
        self._publishing: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # the events being published are a period late: no more pauses
        self.merges = 0

    # --- samples in ------------------------------------------------------------------------------

    def on_sample(self, sample: NodeSample) -> bool:
        """Keep a collector's sample for its window's merge; False when it came after the merge
        (what it counted then goes into the next window) or the same node's part came already
        (two collectors on a node count once)."""
        end = _grid_key(sample.end.timestamp())
        key = (sample.node_id, sample.part)
        if end < self._merged_until - self._memory:
            return False  # older than the broker keeps a sample: counted already
        if end not in self._samples and len(self._samples) >= WINDOWS_KEPT:
            # Merges stopped coming (a stalled period): the oldest window makes room, and counts
            # as its own if its merge still comes, else in the next one.
            oldest = min(self._samples)
            if end > oldest:
                self._count_late(oldest, self._samples.pop(oldest))
        if end <= self._merged_until or (end not in self._samples and len(self._samples) >= WINDOWS_KEPT):
            self._count_late(end, {key: sample})
            return False
        parts = self._samples.setdefault(end, {})
        if key in parts or len(parts) >= self._max_nodes * 4:
            return False
        parts[key] = sample
        return True

    def _count_late(self, end: float, samples: Mapping[tuple[str, int], NodeSample]) -> None:
        """Samples that missed their window's merge or were pushed out before it: their kills and
        restarts count in the next merge (once per node's part and window)."""
        merged = self._merged.get(end)
        for key, sample in samples.items():
            if merged is not None and key in merged:
                continue
            if len(self._late) >= self._max_nodes * 4:
                log.warning("late metrics samples dropped: too many", extra=fields(end=sample.end.isoformat()))
                return
            if merged is None:
                merged = self._merged[end] = set()
            merged.add(key)
            self._late.append(sample)

    # --- the period ------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                at = next_pass(time.time(), self._period)
                await asyncio.sleep(max(0.0, at - time.time()))
                try:
                    await self.period(at)
                except OrchestratorError as exc:
                    log.warning("metrics merge failed", extra=fields(error=exc.message))
                except Exception:  # keep reporting next period
                    log.exception("metrics merge failed")
        finally:
            if self._publishing is not None:
                self._publishing.cancel()

    async def period(self, at: float, *, settle: float | None = None) -> list[SiteMetrics | NodeMetrics]:
        """One period ending at grid time `at`: Traefik scraped now, the samples merged once
        they had time to come, the events published spread out (while active)."""
        served = await self._served()
        await asyncio.sleep(self._settle if settle is None else settle)
        events = self.merge(at, await self._sites(), served)
        if self.active is None or self.active.is_set():
            if self._publishing is not None and not self._publishing.done():
                # A period late: the rest goes now, unspread (its windows' counts are in no other
                # event), then this period's. Meanwhile no new period starts: the grid points
                # missed are merged into the next (see `merge`).
                self._hurry.set()
                await asyncio.gather(self._publishing, return_exceptions=True)
            self._hurry.clear()
            self._publishing = asyncio.create_task(self._publish_spread(events, self._spread))
        return events

    async def _served(self) -> dict[str, Served]:
        try:
            texts = await self._scrape()
        except OrchestratorError as exc:
            log.warning("could not read Traefik's metrics", extra=fields(error=exc.message))
            texts = {}
        parsed = await asyncio.to_thread(lambda: {instance: parse(text) for instance, text in texts.items()})
        return self._scrapes.window(parsed)

    def merge(self, at: float, sites: Iterable[Site], served: Mapping[str, Served]) -> list[SiteMetrics | NodeMetrics]:
        """The window ending at `at`: every site's event, every reporting node's. Samples of grid
        points before it that had no merge of their own (a period that ran past the next grid
        point: a busy event loop, a slow Docker or Traefik) count here as late ones; the samples of
        this window that later ones pushed out while its merge stalled count here as its own."""
        self._merged_until = end = _grid_key(at)
        samples = list(self._samples.pop(end, {}).values())
        # A window pushed out by later ones while its merge stalled is merged now after all.
        others: list[NodeSample] = []
        for sample in self._late:
            (samples if _grid_key(sample.end.timestamp()) == end else others).append(sample)
        self._late = others
        self._merged.setdefault(end, set()).update((s.node_id, s.part) for s in samples)
        for old in [e for e in self._merged if e < end - self._memory]:
            del self._merged[old]
        for missed in sorted(e for e in self._samples if e <= end):
            self._count_late(missed, self._samples.pop(missed))
        by_service: dict[str, list[tuple[NodeSample, TaskWindow]]] = {}
        for sample in samples:
            for entry in sample.sites:
                by_service.setdefault(entry.service, []).append((sample, entry))
        # Samples that missed their own merge: their OOM kills and restarts count in this window
        # (no task: their gauges are of a past instant).
        late, self._late = self._late, []
        for sample in late:
            for entry in sample.sites:
                passed = entry.model_copy(update={"tasks": 0})
                by_service.setdefault(entry.service, []).append((sample, passed))
        grid = Window(
            start=datetime.fromtimestamp(at - self._period, UTC),
            end=datetime.fromtimestamp(at, UTC),
            seconds=self._period,
        )
        latest: dict[int, SiteMetrics] = {}
        for site in sites:
            latest[site.site_id] = site_metrics(
                site, by_service.get(site.service, []), served.get(site.service), grid, self._deployment
            )
        nodes = [n for s in samples if (n := node_metrics(s, self._deployment)) is not None]
        self._latest = latest
        self._site_ids = sorted(latest)
        for node in nodes:
            self._nodes.pop(node.node_id, None)
            self._nodes[node.node_id] = node
        stale = at - WINDOWS_KEPT * self._period
        for node_id in [n for n, m in self._nodes.items() if m.window.end.timestamp() < stale]:
            del self._nodes[node_id]
        while len(self._nodes) > self._max_nodes:
            del self._nodes[next(iter(self._nodes))]
        self.merges += 1
        return [*latest.values(), *nodes]

    async def _publish_spread(self, events: list[SiteMetrics | NodeMetrics], spread: float) -> None:
        pause = spread / len(events) if events else 0.0
        started = time.monotonic()
        for i, event in enumerate(events):
            if not await self.publish(event):
                left = len(events) - i
                log.warning("metrics events not published: the broker did not take them", extra=fields(left=left))
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, started + (i + 1) * pause - time.monotonic())):
                    await self._hurry.wait()

    # --- the current values ----------------------------------------------------------------------

    def site(self, site_id: int) -> SiteMetrics | None:
        return self._latest.get(site_id)

    def page(self, after: int | None, limit: int) -> tuple[list[SiteMetrics], int | None]:
        start = 0 if after is None else bisect.bisect_right(self._site_ids, after)
        ids = self._site_ids[start : start + limit]
        more = start + limit < len(self._site_ids)
        return [self._latest[i] for i in ids], (ids[-1] if more and ids else None)

    def nodes(self) -> list[NodeMetrics]:
        return sorted(self._nodes.values(), key=lambda n: n.hostname)
