"""Never lose an event: N >= 200 events over 20 sites while the world misbehaves.

After each fault: every site's service matches its newest version (absent if that was a delete),
every event id has a result or sits in the dead-letter queue with a reason, and the consumer
still serves. Loss counts are printed in the run's summary.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import docker
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario import (
    LOSS_REPORT,
    Stream,
    audit,
    publish_reliably,
    restart_rabbitmq,
    start_stack,
    still_consuming,
    stop_dockerd,
    summary,
)
from support import DeadLetters, Director, OrchestratorProcess, Results, eventually, scope, site_event, write_site

pytestmark = pytest.mark.faults

SITES, PER_SITE = 20, 10  # 200 events per scenario
_site_ids = itertools.count(scope.FAULT_SITES)  # +0..299: five streams of 20 sites, and restarts


def new_stream(seed: int) -> Stream:
    return Stream([next(_site_ids) for _ in range(SITES)], PER_SITE, seed)


async def run(
    name: str,
    director: Director,
    results: Results,
    admin: aio_pika.abc.AbstractRobustConnection,
    api: docker.APIClient,
    events: list[dict[str, Any]],
    stream: Stream,
    fault: Callable[[], Awaitable[None]] | None = None,
    extra: list[tuple[bytes, str, str]] = (),  # type: ignore[assignment]
) -> None:
    """Publish `events` (and `extra` raw messages), inject `fault` half-way, audit, report."""
    ledger = DeadLetters(admin)
    await ledger.take()
    messages: list[Any] = [("event", e) for e in events] + [("raw", r) for r in extra]
    random.Random(7).shuffle(messages) if extra else None
    half = len(messages) // 2
    fault_task = None
    for index, (kind, item) in enumerate(messages):
        if index == half and fault is not None:
            fault_task = asyncio.create_task(fault())
        if kind == "event":
            await publish_reliably(director, item)
        else:
            body, routing_key, message_id = item
            await publish_reliably(director, body=body, routing_key=routing_key, message_id=message_id)
    if fault_task is not None:
        await fault_task
    counts = await audit(stream, results, ledger, api, poison_ids={m for _, _, m in extra})
    LOSS_REPORT.append(summary(name, counts))
    assert counts["lost"] == 0, counts
    assert counts["mismatched_sites"] == 0, counts["_details"]
    assert counts["poison_dead_lettered"] == counts["poison"], counts
    await still_consuming(director, results, next(_site_ids))


async def test_rabbitmq_restart_mid_stream_loses_nothing(
    director: Director, results: Results, admin: Any, api: docker.APIClient
) -> None:
    stream = new_stream(1)

    async def fault() -> None:
        await asyncio.to_thread(restart_rabbitmq)

    await run("rabbitmq restart", director, results, admin, api, stream.events, stream, fault)


async def test_docker_down_for_20s_mid_stream_loses_nothing(
    director: Director, results: Results, admin: Any, api: docker.APIClient
) -> None:
    stream = new_stream(2)

    async def fault() -> None:
        await asyncio.to_thread(stop_dockerd)
        await asyncio.sleep(22)
        await asyncio.to_thread(start_stack)

    await run("dockerd down 22s", director, results, admin, api, stream.events, stream, fault)


async def test_orchestrator_killed_mid_stream_loses_nothing(
    orchestrator: OrchestratorProcess,
    director: Director,
    results: Results,
    admin: Any,
    api: docker.APIClient,
) -> None:
    stream = new_stream(3)

    async def fault() -> None:
        seen = len(results.by_cause)
        for _ in range(100):  # kill it while it is busy, not idle
            if len(results.by_cause) > seen + 5:
                break
            await asyncio.sleep(0.2)
        orchestrator.kill()
        orchestrator.start()
        await orchestrator.wait_consuming()

    await run("kill -9", director, results, admin, api, stream.events, stream, fault)


async def test_out_of_order_and_duplicate_deliveries_converge_to_the_newest(
    director: Director, results: Results, admin: Any, api: docker.APIClient
) -> None:
    stream = new_stream(4)
    rng = random.Random(4)
    events = list(stream.events) + rng.sample(stream.events, len(stream.events) // 3)
    rng.shuffle(events)

    await run("out of order + duplicates", director, results, admin, api, events, stream)


def _event_like(site_id: int) -> dict[str, Any]:
    return json.loads(json.dumps({
        "event_id": "6f1c1e8e-2f0d-4c1a-9f5e-000000000000", "type": "site.created",
        "occurred_at": "2026-01-01T00:00:00+00:00", "version": 1,
        "site": {"id": site_id, "name": "p", "kind": "dynamic", "domains": ["p.example.com"],
                 "image": {"name": "director/base:latest", "custom": False},
                 "resources": {"cpus": 0.1, "memory": "32Mi"}, "serving": False, "env": {}},
    }))  # fmt: skip


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# Each mutation makes the event certainly invalid under the contract.
_MUTATIONS: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    (("version",), st.integers(max_value=0) | st.text(max_size=5) | st.none() | st.floats() | st.booleans()),
    (("site", "id"), st.integers(max_value=0) | st.text(max_size=5) | st.none() | st.lists(st.integers(), max_size=2)),
    (("site", "kind"), st.text(max_size=10).filter(lambda k: k not in ("dynamic", "static")) | st.integers()),
    (("site", "domains"), st.lists(st.text(max_size=30).map(lambda t: t + "`) || Host(`x"), min_size=1, max_size=3)),
    (("site", "resources", "memory"), st.text(max_size=8).filter(lambda m: not m[:-2].isdigit()) | st.integers()),
    (("event_id",), st.text(max_size=40).filter(lambda t: not _is_uuid(t)) | st.integers()),
    (("site", "env"), st.dictionaries(st.sampled_from(["PORT", "HOST", "1X", "A-B", ""]), st.text(), min_size=1)),
    (("site",), _json.filter(lambda v: not isinstance(v, dict)) | st.just({})),
]


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    event = _event_like(draw(st.integers(min_value=scope.FAULT_SITES + 350, max_value=scope.FAULT_SITES + 399)))
    path, values = draw(st.sampled_from(_MUTATIONS))
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = draw(values)
    return json.dumps(event).encode()


def poison_messages(count: int) -> list[tuple[bytes, str, str]]:
    """Hypothesis-generated bytes and near-valid JSON, each with a unique message id."""
    bodies: list[bytes] = []

    @settings(max_examples=count * 2, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=300), near_valid()))
    def collect(body: bytes) -> None:
        bodies.append(body)

    collect()
    keys = ["site.created", "site.updated", "site.deleted"]
    return [(body, keys[i % 3], f"poison-{i}") for i, body in enumerate(bodies[:count])]


async def test_a_thousand_poison_messages_are_dead_lettered_and_nothing_else_is_lost(
    director: Director, results: Results, admin: Any, api: docker.APIClient
) -> None:
    stream = new_stream(5)
    poison = poison_messages(1000)
    assert len(poison) == 1000

    await run("poison x1000", director, results, admin, api, stream.events, stream,
              extra=poison)  # fmt: skip


async def test_sigterm_finishes_in_flight_work_and_exits_zero(
    orchestrator: OrchestratorProcess, director: Director, results: Results, sites_root: Path
) -> None:
    site_id = next(_site_ids)
    write_site(sites_root, site_id, page="finished before exiting")
    event = site_event("site.created", site_id, 1, serving=True)
    await publish_reliably(director, event)
    await asyncio.sleep(0.5)  # received, still converging

    code = await asyncio.to_thread(orchestrator.stop)
    try:
        assert code == 0, orchestrator.tail()
        result = await results.wait_for(event["event_id"], timeout=10)  # finished before exiting
        assert result.type == "site.deployed", result
    finally:
        orchestrator.start()
        await orchestrator.wait_consuming()


async def test_a_second_replica_stands_by_and_takes_over(
    orchestrator: OrchestratorProcess,
    director: Director,
    results: Results,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    standby = OrchestratorProcess(orchestrator.env, tmp_path_factory.mktemp("logs") / "standby.log")
    standby.start()
    try:
        await standby.wait_consuming()
        first = [site_event("site.created", next(_site_ids), 1, serving=False) for _ in range(5)]
        for event in first:
            await publish_reliably(director, event)
        for event in first:
            assert (await results.wait_for(event["event_id"])).type == "site.deployed"
        assert not any(line.get("msg") == "event handled" for line in standby.log_lines())  # single active consumer

        orchestrator.kill()
        second = [site_event("site.created", next(_site_ids), 1, serving=False) for _ in range(5)]
        for event in second:
            await publish_reliably(director, event)
        for event in second:
            assert (await results.wait_for(event["event_id"], timeout=60)).type == "site.deployed"

        def handled_by_standby() -> bool:  # its log line follows the ack, so it may trail the result
            handled = {line.get("event_id") for line in standby.log_lines() if line.get("msg") == "event handled"}
            return {e["event_id"] for e in second} <= handled

        await eventually(handled_by_standby, 10)
    finally:
        if not orchestrator.alive:
            orchestrator.start()
            await orchestrator.wait_consuming()
        assert standby.stop() == 0, standby.tail()
