"""A stream of site events over many sites, the faults to inject into it, and the final audit:
every site matches its newest version, and no event is lost (a result or a dead letter each)."""

from __future__ import annotations

import json
import random
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import docker
from support import ROOT, DeadLetters, Director, Results, eventually, publish_reliably, site_event

# Loss counts of every fault scenario, printed at the end of the run (see conftest.py).
LOSS_REPORT: list[str] = []


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
                serving = rng.random() < 0.3  # most versions need no container: a fast, realistic mix
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


def restart_rabbitmq() -> None:
    subprocess.run(["service", "rabbitmq-server", "stop"], check=True, capture_output=True, timeout=120)
    time.sleep(2)
    subprocess.run(["service", "rabbitmq-server", "start"], check=True, capture_output=True, timeout=120)
    subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, capture_output=True, timeout=120)


def stop_dockerd() -> None:
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode != 0:
            return
        time.sleep(0.5)
    raise AssertionError("dockerd did not stop")


def start_stack() -> None:
    """dockerd, swarm, Traefik: the project's own idempotent script brings them back."""
    subprocess.run(["bash", str(ROOT / "scripts" / "stack-up.sh")], check=True, capture_output=True, timeout=300)


def summary(name: str, counts: dict[str, Any]) -> str:
    shown = {k: v for k, v in counts.items() if not k.startswith("_")}
    return f"{name}: " + json.dumps(shown)
