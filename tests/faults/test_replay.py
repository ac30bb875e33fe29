"""Operators replay what a Docker outage dead-lettered, and each event is applied exactly once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest
from scenario import publish_reliably, start_stack, stop_dockerd
from support import (
    ROOT,
    Director,
    OrchestratorProcess,
    Results,
    eventually,
    fresh_site_id,
    site_event,
    write_site,
)

pytestmark = pytest.mark.faults

# Give up quickly so the outage dead-letters the events.
ORCHESTRATOR_SETTINGS = {"max_attempts": "2", "retry_budget_seconds": "1", "retry_delay_seconds": "1"}


def cli(orchestrator: OrchestratorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "dead-letters", *args],
        env=orchestrator.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        stdin=subprocess.DEVNULL,
    )


def listed(orchestrator: OrchestratorProcess, *args: str) -> list[dict[str, Any]]:
    return json.loads(cli(orchestrator, "list", "--json", *args).stdout)  # type: ignore[no-any-return]


async def test_events_dead_lettered_during_a_docker_outage_replay_exactly_once(
    fault_orchestrator: OrchestratorProcess,
    fault_director: Director,
    fault_results: Results,
    fault_api: docker.APIClient,
    fault_root: Path,
) -> None:
    site_ids = [fresh_site_id() + 800 for _ in range(5)]  # 98xx: clear of the other fault tests
    for site_id in site_ids:
        write_site(fault_root, site_id, page=f"replayed {site_id}")
    events = [site_event("site.created", s, 1, serving=True) for s in site_ids]
    await asyncio.to_thread(stop_dockerd)
    try:
        for event in events:
            await publish_reliably(fault_director, event)
        failures = [await fault_results.wait_for(e["event_id"], timeout=120) for e in events]
    finally:
        await asyncio.to_thread(start_stack)

    assert all(f.type == "site.failed" and f.error and f.error.code == "docker_unavailable" for f in failures)
    assert all(f.error and f.error.retryable for f in failures)
    letters = listed(fault_orchestrator, "--reason", "docker_unavailable")
    assert sorted(letter["id"] for letter in letters) == sorted(e["event_id"] for e in events)
    assert all(letter["attempts"] == 2 and letter["routing_key"] == "site.created" for letter in letters)
    assert {letter["site_id"] for letter in letters} == set(site_ids)

    dry = cli(fault_orchestrator, "replay", "--reason", "docker_unavailable", "--dry-run")
    assert "would replay 5" in dry.stdout
    assert len(listed(fault_orchestrator)) == 5  # a dry run changes nothing

    replay = cli(fault_orchestrator, "replay", "--reason", "docker_unavailable")
    assert "replayed 5" in replay.stdout

    for event in events:
        await eventually(lambda e=event: len(fault_results.by_cause.get(e["event_id"], [])) >= 2, 120)
    for event, site_id in zip(events, site_ids, strict=True):
        outcomes = [r.type for r in fault_results.by_cause[event["event_id"]]]
        assert outcomes == ["site.failed", "site.deployed"], outcomes
        assert len(fault_api.services(filters={"name": f"site_{site_id:04d}"})) == 1
    assert listed(fault_orchestrator) == []
    again = cli(fault_orchestrator, "replay", "--all")
    assert "replayed 0" in again.stdout
    await asyncio.sleep(3)  # nothing more may arrive: each event was applied once
    assert all(len(fault_results.by_cause[e["event_id"]]) == 2 for e in events)


async def test_replay_of_one_id_and_purge_with_confirmation(
    fault_orchestrator: OrchestratorProcess, fault_director: Director, fault_results: Results
) -> None:
    bad = [site_event("site.created", fresh_site_id() + 800, 1, domains=["bad host.example.com"]) for _ in range(3)]
    for event in bad:
        await publish_reliably(fault_director, event)
        await fault_results.wait_for(event["event_id"])
    assert {letter["id"] for letter in listed(fault_orchestrator, "--reason", "invalid_event")} >= {
        e["event_id"] for e in bad
    }

    one = cli(fault_orchestrator, "replay", bad[0]["event_id"])
    assert "replayed 1" in one.stdout
    await eventually(lambda: len(fault_results.by_cause[bad[0]["event_id"]]) == 2, 60)
    # Still invalid, so dead-lettered again, now marked as replayed.
    again = [letter for letter in listed(fault_orchestrator) if letter["id"] == bad[0]["event_id"]]
    assert len(again) == 1 and again[0]["reason"] == "invalid_event"

    with pytest.raises(subprocess.CalledProcessError):  # no terminal to confirm on, no --yes
        cli(fault_orchestrator, "purge")
    assert listed(fault_orchestrator)
    purged = cli(fault_orchestrator, "purge", "--yes")
    assert "purged" in purged.stdout
    assert listed(fault_orchestrator) == []
