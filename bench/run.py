"""On-demand benchmark of the per-event pure path, as ratios against a baseline run in the same process.

baseline: json.loads of the event body (the least any consumer does)
measured: parse_event (JSON + strict contract validation) and parse_event + desired_service
          (the whole pure core: validation, policy, Traefik labels, spec and its fingerprint)
Prints medians over repeated rounds and the ratio to the baseline; these machines are noisy, so
compare ratios, not absolute times. Also prints the peak memory of building 10,000 specs.
"""

from __future__ import annotations

import json
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import PurePosixPath

from orchestrator.config import Settings
from orchestrator.envelope import parse_event
from orchestrator.events import SiteCreated
from orchestrator.spec import desired_service

SETTINGS = Settings()
EVENT = {
    "event_id": str(uuid.uuid4()),
    "type": "site.created",
    "occurred_at": "2026-01-01T12:00:00+00:00",
    "version": 3,
    "site": {
        "id": 42,
        "name": "bench",
        "kind": "dynamic",
        "domains": [f"d{i}.example.com" for i in range(5)],
        "image": {"name": "director/base:latest", "custom": False},
        "resources": {"cpus": 0.5, "memory": "256Mi"},
        "serving": True,
        "env": {f"KEY_{i}": "value" * 4 for i in range(20)},
    },
}
BODY = json.dumps(EVENT).encode()
ROOT = PurePosixPath("/srv/director/sites/site_0042")


def baseline() -> None:
    json.loads(BODY)


def parse() -> None:
    parse_event(BODY, "site.created")


def parse_and_spec() -> None:
    event = parse_event(BODY, "site.created")
    assert isinstance(event, SiteCreated)
    desired_service(event.site, event.version, SETTINGS, ROOT)


def per_call(fn: Callable[[], None], calls: int = 2000, rounds: int = 15) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def main() -> None:
    base = per_call(baseline)
    print(f"{'case':<28}{'median/event':>14}{'x baseline':>12}")
    for name, fn in (
        ("json.loads (baseline)", baseline),
        ("parse_event", parse),
        ("parse + desired_service", parse_and_spec),
    ):
        value = base if fn is baseline else per_call(fn)
        print(f"{name:<28}{value * 1e6:>11.1f} us{value / base:>11.1f}x")
    tracemalloc.start()
    specs = []
    for _ in range(10_000):
        event = parse_event(BODY, "site.created")
        assert isinstance(event, SiteCreated)
        specs.append(desired_service(event.site, event.version, SETTINGS, ROOT))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak memory for 10,000 specs held at once: {peak / 2**20:.1f} MiB ({peak / 10_000 / 1024:.1f} KiB/spec)")


if __name__ == "__main__":
    main()
