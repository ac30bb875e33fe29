"""What `orchestrator run` and `orchestrator collect` add around the metrics package: this
deployment's sites, a collector's health, the metrics queues only with METRICS_SECONDS, and the
messages as they go out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from orchestrator.config import Settings
from orchestrator.labels import DEPLOYMENT, SITE_ID
from orchestrator.metrics.reporter import Site
from orchestrator.monitor.metering import Metering, collector_problems, sites_of
from orchestrator.sites.service import Service


def service(name: str, labels: dict[str, str], running: int | None = 1) -> Service:
    return Service(id=name, name=name, index=1, labels=labels, replicas=1, running=running)


def test_this_deployments_sites_only() -> None:
    services = [
        service("site_0001", {DEPLOYMENT: "prod", SITE_ID: "1"}),
        service("site_0002", {DEPLOYMENT: "other", SITE_ID: "2"}),
        service("site_0003", {DEPLOYMENT: "prod", SITE_ID: "x"}),
        service("site_0004", {DEPLOYMENT: "prod", SITE_ID: "4"}, running=None),
    ]
    assert sites_of(services, "prod") == [Site(1, "site_0001", 1), Site(4, "site_0004", 0)]


def test_a_collectors_health() -> None:
    now = time.time()
    assert collector_problems(True, now - 10, 100, period=60) == []
    assert collector_problems(False, now - 10, 100, period=60) == ["docker's event stream is not connected"]
    assert collector_problems(True, now - 200, 300, period=60) == ["no metrics pass for 180 s"]
    assert collector_problems(True, None, 10, period=60) == []  # starting: its first pass is due
    assert collector_problems(True, None, 200, period=60) == ["no metrics pass for 180 s"]


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, str | None]] = []

    async def __call__(self, key: str, body: bytes, message_id: str | None) -> bool:
        self.messages.append((key, body, message_id))
        return True


async def _depths(names: list[str]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


def publisher(sent: dict[str, Sent]) -> Callable[..., Sent]:
    def make(exchange: str, **options: object) -> Sent:
        sent[exchange] = Sent()
        return sent[exchange]

    return make


async def test_queues_and_messages() -> None:
    off = Metering(Settings(metrics_seconds=0), None, publisher({}), _depths)  # type: ignore[arg-type]
    assert off.processors() == {} and off.start(asyncio.Event(), None, None) == []  # type: ignore[arg-type]
    sent: dict[str, Sent] = {}
    on = Metering(Settings(metrics_collector=False), None, publisher(sent), _depths)  # type: ignore[arg-type]
    on.figures.file_totals = lambda: (5, 6)
    events = sent["orchestrator.results"]
    assert set(on.processors()) == {"metrics", "samples"}
    active = asyncio.Event()
    work = on.start(active, None, None)  # type: ignore[arg-type]
    assert len(work) == 2 and on.reporter is not None and on.reporter.active is active
    for coroutine in work:
        coroutine.close()
    now = datetime.now(UTC)
    event = on.figures.close(now - timedelta(seconds=60), now, True)
    assert await on.publish(event)
    [(key, body, message_id)] = events.messages
    assert key == "orchestrator.metrics" and message_id == str(event.event_id)
    assert json.loads(body)["file_bytes_read"] == 5
    await on.close()
