"""A stream of site events over many sites, the faults to inject into it, and the final audit:
every site matches its newest version, and no event is lost (a result or a dead letter each).
Used by tests/faults (faults of the machine: run alone) and tests/resilience (faults of our own
process and of the messages: run beside the integration tests)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import docker
import pytest

from harness import scope
from harness.broker import DeadLetters
from harness.director import Director, Results, publish_reliably, site_event
from harness.rabbit import LOCAL_BROKER, Broker
from harness.stack import SITE_RESULTS, TRAEFIK
from harness.waiting import eventually
from support.running import Running, stack_running

# Loss counts of every fault scenario, printed at the end of the run (tests/conftest.py).
LOSS_REPORT: list[str] = []
# An orchestrator that rides out trouble: enough delayed retries for a Docker outage of well over
# 20 s, production's Docker workers, and Docker calls that time out soon when the daemon hangs.
STREAM_SETTINGS = {"max_attempts": "30", "retry_budget_seconds": "3", "retry_delay_seconds": "2",
                   "converge_timeout_seconds": "90", "concurrency": "8", "prefetch": "32",
                   "docker_timeout_seconds": "3"}  # fmt: skip


@contextlib.asynccontextmanager
async def stream_stack(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    broker: Broker = LOCAL_BROKER,
    **overrides: str,
) -> AsyncIterator[Running]:
    """A module's own stack for stream tests (`kind`-<module>) on `broker`: `STREAM_SETTINGS`, the
    module's `ORCHESTRATOR_SETTINGS` and `overrides` on top, listening on the durable results queue
    (results published while the broker restarts are not missed)."""
    name = f"{kind}-{request.module.__name__.rsplit('.', 1)[-1]}"
    settings = STREAM_SETTINGS | getattr(request.module, "ORCHESTRATOR_SETTINGS", {}) | overrides
    async with stack_running(
        name, tmp_path_factory.mktemp("logs"), results_queue=SITE_RESULTS, broker=broker, **settings
    ) as running:
        yield running


@dataclass
class Stream:
    """Per site: a history of versions (created, updates, deletes, re-creates) as Director would send."""

    site_ids: list[int]
    per_site: int
    seed: int
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        histories = []
        for site_id in self.site_ids:
            history, exists = [], False
            for version in range(1, self.per_site + 1):
                if exists and rng.random() < 0.12:
                    history.append(site_event("site.deleted", site_id, version))
                    exists = False
                    continue
                serving = rng.random() < 0.15  # most versions need no container: a fast, realistic mix
                history.append(
                    site_event(
                        "site.updated" if exists else "site.created",
                        site_id,
                        version,
                        domains=[f"f{site_id}-{version % 3}.faults.example.com"],
                        serving=serving,
                        resources={"cpus": rng.choice([0.1, 0.2, 0.25]), "memory": rng.choice(["32Mi", "64Mi"])},
                    )
                )
                exists = True
            histories.append(history)
        # Interleave sites, each site's versions in order (scenarios may reorder).
        while any(histories):
            for history in histories:
                if history:
                    self.events.append(history.pop(0))

    def newest(self) -> dict[int, dict[str, Any]]:
        latest: dict[int, dict[str, Any]] = {}
        for event in self.events:
            site_id = event["site"]["id"]
            if site_id not in latest or event["version"] > latest[site_id]["version"]:
                latest[site_id] = event
        return latest


async def audit(
    stream: Stream,
    results: Results,
    ledger: DeadLetters,
    api: docker.APIClient,
    *,
    poison_ids: set[str] = frozenset(),  # type: ignore[assignment]
    timeout: float = 600,
) -> dict[str, int]:
    """Wait until every event is accounted for, then check the swarm against the newest versions."""
    event_ids = {e["event_id"] for e in stream.events}

    async def accounted() -> bool:
        await ledger.take()
        done = set(results.by_cause) | set(ledger.seen)
        return event_ids <= done and poison_ids <= set(ledger.seen)

    try:
        await eventually(accounted, timeout, interval=2)
    except AssertionError:
        pass  # reported as losses below
    done = set(results.by_cause) | set(ledger.seen)
    lost_events = len(event_ids - done)
    lost_poison = len(poison_ids - set(ledger.seen))
    mismatched = []
    for site_id, newest in stream.newest().items():
        found = service_of(api, site_id)
        if newest["type"] == "site.deleted":
            if found is not None:
                mismatched.append(f"site {site_id}: expected absent (deleted at v{newest['version']})")
            continue
        expected = {
            "version": str(newest["version"]),
            "replicas": 1 if newest["site"]["serving"] else 0,
            "domains": ",".join(newest["site"]["domains"]),
        }
        actual = None
        if found is not None:
            labels = found["Spec"]["Labels"]
            actual = {
                "version": labels.get("com.director.version"),
                "replicas": found["Spec"]["Mode"]["Replicated"]["Replicas"],
                "domains": labels.get("com.director.domains"),
            }
        if actual != expected:
            mismatched.append(f"site {site_id}: expected {expected}, swarm has {actual}")
    return {
        "events": len(event_ids),
        "results": len(event_ids & set(results.by_cause)),
        "dead_lettered": len(event_ids & set(ledger.seen)),
        "poison": len(poison_ids),
        "poison_dead_lettered": len(poison_ids & set(ledger.seen)),
        "lost": lost_events + lost_poison,
        "mismatched_sites": len(mismatched),
        "_details": mismatched,  # type: ignore[dict-item]
    }


def service_of(api: docker.APIClient, site_id: int) -> dict[str, Any] | None:
    for _ in range(60):
        try:
            return api.inspect_service(f"site_{site_id:04d}")  # type: ignore[no-any-return]
        except docker.errors.NotFound:
            return None
        except (docker.errors.APIError, OSError, Exception):
            time.sleep(1)  # the daemon may still be coming back
    raise AssertionError("docker did not answer")


async def still_consuming(director: Director, results: Results, site_id: int) -> None:
    """The consumer serves a fresh event after the fault."""
    event = site_event("site.created", site_id, 1, serving=False)
    await publish_reliably(director, event)
    result = await results.wait_for(event["event_id"], timeout=180)
    assert result.type == "site.deployed", result


# --- faults ------------------------------------------------------------------------------------


def stop_dockerd() -> None:
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode != 0:
            return
        time.sleep(0.5)
    raise AssertionError("dockerd did not stop")


def start_dockerd() -> None:
    """Only what the outage stopped: dockerd (its swarm and the containers with a restart policy,
    Traefik among them, come back with it), then wait until Traefik answers again."""
    with open("/var/log/dockerd.log", "ab") as log:  # the child keeps its own copy of the descriptor
        subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True, text=True
        )
        traefik = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", TRAEFIK], capture_output=True, text=True
        )
        if state.stdout.strip() == "active" and traefik.stdout == "404":
            return
        time.sleep(0.5)
    raise AssertionError("dockerd, its swarm or Traefik did not come back within 120 s")


def summary(name: str, counts: dict[str, Any]) -> str:
    shown = {k: v for k, v in counts.items() if not k.startswith("_")}
    return f"{name}: " + json.dumps(shown)


SITES, PER_SITE = 20, 10  # 200 events per machine fault (long enough to span a broker restart and a hang)
_site_ids = itertools.count(scope.FAULT_SITES)  # +0..299: streams of 20 sites, and a few more


def next_site() -> int:
    """A site id of this process's fault share (scope.FAULT_SITES)."""
    return next(_site_ids)


def new_stream(seed: int, sites: int = SITES) -> Stream:
    return Stream([next(_site_ids) for _ in range(sites)], PER_SITE, seed)


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
