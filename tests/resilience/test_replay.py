"""Operators replay what a Docker outage dead-lettered, and each event is applied exactly once.
The outage is this module's orchestrator's alone: it reaches dockerd through a gate that the test
stops (`support.dockergate`), so every other test on the machine keeps its Docker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest
from aio_pika.abc import AbstractRobustConnection
from support import (
    Director,
    OrchestratorProcess,
    Results,
    Running,
    eventually,
    scope,
    site_event,
    write_site,
)
from support.dockergate import DockerGate
from support.streams import publish_reliably, stream_stack

REPLAY_SITES = iter(range(scope.FAULT_SITES + 300, scope.FAULT_SITES + 400))
# Give up quickly so the outage dead-letters the events.
ORCHESTRATOR_SETTINGS = {"max_attempts": "2", "retry_budget_seconds": "1", "retry_delay_seconds": "1",
                         "docker_timeout_seconds": "2"}  # fmt: skip


@pytest.fixture(scope="module")
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, gate: DockerGate
) -> AsyncIterator[Running]:
    async with stream_stack("resilience", request, tmp_path_factory, docker_url=gate.url) as running:
        yield running


def dead_letters(orchestrator: OrchestratorProcess, *args: str) -> str:
    """`orchestrator dead-letters ARGS...`; its output, once it succeeded."""
    done = orchestrator.cli("dead-letters", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def listed(orchestrator: OrchestratorProcess, *args: str) -> list[dict[str, Any]]:
    return json.loads(dead_letters(orchestrator, "list", "-o", "json", *args))  # type: ignore[no-any-return]


async def test_events_dead_lettered_during_a_docker_outage_replay_exactly_once(
    orchestrator: OrchestratorProcess,
    director: Director,
    results: Results,
    admin: AbstractRobustConnection,
    api: docker.APIClient,
    sites_root: Path,
    gate: DockerGate,
) -> None:
    site_ids = [next(REPLAY_SITES) for _ in range(5)]
    for site_id in site_ids:
        write_site(sites_root, site_id, page=f"replayed {site_id}")
    events = [site_event("site.created", s, 1, serving=False) for s in site_ids]  # replays, not rollouts, under test
    hung = asyncio.create_task(asyncio.to_thread(gate.hang, 12))  # every Docker call times out
    try:
        await asyncio.sleep(0.5)
        for event in events:
            await publish_reliably(director, event)
        failures = [await results.wait_for(e["event_id"], timeout=120) for e in events]
    finally:
        await hung

    assert all(f.type == "site.failed" and f.error and f.error.code == "docker_unavailable" for f in failures)
    assert all(f.error and f.error.retryable for f in failures)
    letters = listed(orchestrator, "--reason", "docker_unavailable")
    assert sorted(letter["id"] for letter in letters) == sorted(e["event_id"] for e in events)
    assert all(letter["attempts"] == 2 and letter["routing_key"] == "site.created" for letter in letters)
    assert {letter["site_id"] for letter in letters} == set(site_ids)

    dry = dead_letters(orchestrator, "replay", "--reason", "docker_unavailable", "--dry-run")
    assert "would replay 5" in dry
    assert len(listed(orchestrator)) == 5  # a dry run changes nothing

    replay = dead_letters(orchestrator, "replay", "--reason", "docker_unavailable")
    assert "replayed 5" in replay

    for event in events:
        await eventually(lambda e=event: len(results.by_cause.get(e["event_id"], [])) >= 2, 120)
    for event, site_id in zip(events, site_ids, strict=True):
        outcomes = [r.type for r in results.by_cause[event["event_id"]]]
        assert outcomes == ["site.failed", "site.deployed"], outcomes
        assert len(api.services(filters={"name": f"site_{site_id:04d}"})) == 1
    assert listed(orchestrator) == []
    again = dead_letters(orchestrator, "replay", "--all")
    assert "replayed 0" in again
    # Nothing more can arrive: no copy of them waits in the work or retry queue (results go out
    # before a message is acked), and each event has its two results, so each was applied once.
    channel = await admin.channel()
    for queue in ("orchestrator.site-events", "orchestrator.site-events.retry"):
        assert (await channel.declare_queue(queue, passive=True)).declaration_result.message_count == 0
    await channel.close()
    assert all(len(results.by_cause[e["event_id"]]) == 2 for e in events)


async def test_replay_of_one_id_and_purge_with_confirmation(
    orchestrator: OrchestratorProcess, director: Director, results: Results
) -> None:
    bad = [site_event("site.created", next(REPLAY_SITES), 1, domains=["bad host.example.com"]) for _ in range(3)]
    for event in bad:
        await publish_reliably(director, event)
        await results.wait_for(event["event_id"])
    assert {letter["id"] for letter in listed(orchestrator, "--reason", "invalid_event")} >= {
        e["event_id"] for e in bad
    }

    one = dead_letters(orchestrator, "replay", bad[0]["event_id"])
    assert "replayed 1" in one
    await eventually(lambda: len(results.by_cause[bad[0]["event_id"]]) == 2, 60)
    # Still invalid, so dead-lettered again, now marked as replayed.
    again = [letter for letter in listed(orchestrator) if letter["id"] == bad[0]["event_id"]]
    assert len(again) == 1 and again[0]["reason"] == "invalid_event"

    refused = orchestrator.cli("dead-letters", "purge")  # no terminal to confirm on, no --yes
    assert refused.returncode != 0 and "refusing" in refused.stderr
    assert listed(orchestrator)
    purged = dead_letters(orchestrator, "purge", "--yes")
    assert "purged" in purged
    assert listed(orchestrator) == []
