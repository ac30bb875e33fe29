"""Pure: when a name's next attempt is due, how long to back off after a failure, when to warn.

A certificate is renewed once a third of its lifetime is left (Let's Encrypt's 90 days: at 30
days left), so a CA outage of weeks passes without expiry. Failures back off exponentially with
a little jitter (replicas and names do not retry in step), up to a ceiling. `expiring` is said
once, when half of the renewal margin is gone and renewal still failed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from orchestrator.certificates.records import Held, Record


@dataclass(frozen=True)
class Schedule:
    renew_fraction: float  # renew when this fraction of the lifetime is left
    retry_base: float
    retry_max: float


@dataclass(frozen=True)
class Due:
    renewal: bool


@dataclass(frozen=True)
class Later:
    at: float


def renew_at(held: Held, schedule: Schedule) -> float:
    return held.not_after - held.lifetime * schedule.renew_fraction


def expiring(held: Held, schedule: Schedule, now: float) -> bool:
    return now >= held.not_after - held.lifetime * schedule.renew_fraction / 2


def next_step(record: Record, schedule: Schedule, now: float) -> Due | Later:
    """Due now (a first certificate or a renewal), or not before `at`."""
    at = renew_at(record.held, schedule) if record.held is not None else now
    if record.retry_at is not None:
        at = max(at, record.retry_at)
    if at > now:
        return Later(at)
    return Due(renewal=record.held is not None)


def backoff(name: str, failures: int, schedule: Schedule) -> float:
    """Seconds before attempt `failures + 1`: base x 2^(failures-1), capped, +-10 % by name."""
    delay = min(schedule.retry_max, schedule.retry_base * float(2 ** max(0, failures - 1)))
    spread = int.from_bytes(hashlib.sha256(f"{name}:{failures}".encode()).digest()[:2], "big") / 65535
    return max(0.0, min(schedule.retry_max, delay * (0.9 + 0.2 * spread)))
