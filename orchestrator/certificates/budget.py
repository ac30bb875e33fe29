"""Pure: the rate budget, so the issuer queues orders instead of running into the CA's limits.

Let's Encrypt's limits (per account): 300 new orders per 3 hours, 50 new certificates per
registered domain per 7 days (renewals exempt), 5 failed validations per name per hour. The
budget counts what the issuer placed in sliding windows and admits an order only while every
count stays under the operator's limits (defaults below the CA's, see Settings); otherwise it
says when the oldest entry leaves its window. The ledger keeps only what is inside a window: its
size is bounded by the limits and the number of names.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from orchestrator.certificates.coverage import registered_domain

HOUR = 3600.0


@dataclass(frozen=True)
class Limits:
    orders: int
    orders_window: float
    per_domain: int
    per_domain_window: float
    failed_per_name: int
    failed_window: float = HOUR


class Ledger(BaseModel):
    """What was spent, as epoch seconds: orders placed, new certificates per registered domain,
    failed validations per name."""

    orders: list[float] = Field(default_factory=list)
    certificates: dict[str, list[float]] = Field(default_factory=dict)
    failures: dict[str, list[float]] = Field(default_factory=dict)


def admit(ledger: Ledger, limits: Limits, name: str, now: float, renewal: bool) -> float | None:
    """None when an order for `name` may be placed now; else the earliest time it may."""
    waits = [
        _wait(ledger.orders, limits.orders, limits.orders_window, now),
        _wait(ledger.failures.get(name, []), limits.failed_per_name, limits.failed_window, now),
    ]
    if not renewal:
        group = ledger.certificates.get(registered_domain(name), [])
        waits.append(_wait(group, limits.per_domain, limits.per_domain_window, now))
    later = [w for w in waits if w is not None]
    return max(later) if later else None


def spend_order(ledger: Ledger, now: float) -> Ledger:
    return ledger.model_copy(update={"orders": [*ledger.orders, now]})


def spend_certificate(ledger: Ledger, name: str, now: float, renewal: bool) -> Ledger:
    if renewal:
        return ledger
    group = registered_domain(name)
    certificates = dict(ledger.certificates)
    certificates[group] = [*certificates.get(group, []), now]
    return ledger.model_copy(update={"certificates": certificates})


def spend_failure(ledger: Ledger, name: str, now: float) -> Ledger:
    failures = dict(ledger.failures)
    failures[name] = [*failures.get(name, []), now]
    return ledger.model_copy(update={"failures": failures})


def prune(ledger: Ledger, limits: Limits, now: float) -> Ledger:
    """Only what is still inside its window."""

    def keep(times: list[float], window: float) -> list[float]:
        return [t for t in times if t > now - window]

    def keep_all(groups: dict[str, list[float]], window: float) -> dict[str, list[float]]:
        kept = {key: keep(times, window) for key, times in groups.items()}
        return {key: times for key, times in kept.items() if times}

    return Ledger(
        orders=keep(ledger.orders, limits.orders_window),
        certificates=keep_all(ledger.certificates, limits.per_domain_window),
        failures=keep_all(ledger.failures, limits.failed_window),
    )


def _wait(times: list[float], limit: int, window: float, now: float) -> float | None:
    inside = sorted(t for t in times if t > now - window)
    if len(inside) < limit:
        return None
    # The entry whose leaving brings the count under the limit.
    return inside[len(inside) - limit] + window
