"""What Traefik served per site, from its Prometheus metrics (`metrics.prometheus` in
deploy/traefik/traefik.yml): requests by status class and latency percentiles over a window.

Traefik counts per service (`site_0042@swarm`) since it started: `traefik_service_requests_total`
by status code, method and protocol, and the histogram `traefik_service_request_duration_seconds`.
A window is the difference between two scrapes; a counter that went down means Traefik restarted
(its counters start again at zero, so the later reading is the window's). Several Traefik
instances (one per manager) are scraped and kept apart, and their windows added.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

REQUESTS = "traefik_service_requests_total"
BUCKET = "traefik_service_request_duration_seconds_bucket"
# Every service Traefik knows costs a few lines; past this many a scrape is cut (memory bound).
MAX_SERVICES = 100_000
SITE_SERVICE = re.compile(r"site_[0-9]{4,10}")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
PERCENTILES = (0.5, 0.95, 0.99)
K = TypeVar("K")


@dataclass
class Served:
    """One service's counters (cumulative in a scrape, differences in a window)."""

    codes: dict[str, float] = field(default_factory=dict)  # status code -> requests
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (s) -> requests at most that long

    def minus(self, before: Served | None) -> Served:
        """The window between `before` and this scrape (all of this one after a reset)."""
        if before is None or _went_down(self.codes, before.codes) or _went_down(self.buckets, before.buckets):
            return Served(dict(self.codes), dict(self.buckets))
        return Served(
            {code: n - before.codes.get(code, 0) for code, n in self.codes.items()},
            {le: n - before.buckets.get(le, 0) for le, n in self.buckets.items()},
        )

    def add(self, other: Served) -> None:
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n
        for le, n in other.buckets.items():
            self.buckets[le] = self.buckets.get(le, 0) + n

    def by_class(self) -> dict[str, int]:
        """{"2xx": 118, "5xx": 2}: only the classes with requests."""
        classes: dict[str, int] = {}
        for code, n in self.codes.items():
            if n > 0 and len(code) == 3 and code.isdigit():
                name = f"{code[0]}xx"
                classes[name] = classes.get(name, 0) + round(n)
        return dict(sorted(classes.items()))

    def percentiles_ms(self) -> dict[str, float] | None:
        """p50/p95/p99 in milliseconds, interpolated within the histogram's buckets (as
        Prometheus's histogram_quantile does); None without requests."""
        bounds = sorted(self.buckets.items())
        total = bounds[-1][1] if bounds else 0
        if total <= 0:
            return None
        return {f"p{round(q * 100)}": round(_quantile(q, bounds, total) * 1000, 1) for q in PERCENTILES}


def _went_down(now: Mapping[K, float], before: Mapping[K, float]) -> bool:
    return any(n < before.get(key, 0) for key, n in now.items()) or any(key not in now for key in before)


def _quantile(q: float, bounds: list[tuple[float, float]], total: float) -> float:
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound  # past the largest bucket: all that is known is "more than"
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return lower_bound


def parse(text: str, max_services: int = MAX_SERVICES) -> dict[str, Served]:
    """Site services' counters from one scrape, keyed by service name (`site_0042`)."""
    services: dict[str, Served] = {}
    for line in text.splitlines():
        if not line.startswith("traefik_service_"):
            continue
        name, _, rest = line.partition("{")
        if name not in (REQUESTS, BUCKET):
            continue
        labels_text, _, value_text = rest.rpartition("}")
        labels = dict(_LABEL.findall(labels_text))
        service = labels.get("service", "").partition("@")[0]
        if not SITE_SERVICE.fullmatch(service):
            continue
        served = services.get(service)
        if served is None:
            if len(services) >= max_services:
                continue
            served = services[service] = Served()
        try:
            value = float(value_text.split()[0])
        except (ValueError, IndexError):
            continue
        if name == REQUESTS:
            code = labels.get("code", "")
            served.codes[code] = served.codes.get(code, 0) + value
        else:
            try:
                le = float(labels.get("le", ""))
            except ValueError:
                continue
            served.buckets[le] = served.buckets.get(le, 0) + value
    return services


class Scrapes:
    """The last scrape of each Traefik instance, to make windows from the next."""

    def __init__(self, max_instances: int = 16) -> None:
        self._last: dict[str, dict[str, Served]] = {}
        self._max = max_instances

    def window(self, scrapes: Mapping[str, dict[str, Served]]) -> dict[str, Served]:
        """The requests served since the previous scrapes, every instance added. An instance seen
        for the first time gives its baseline only (what it served before is nobody's window),
        and one that did not answer this time keeps its last scrape for the next."""
        total: dict[str, Served] = {}
        for instance, services in scrapes.items():
            before = self._last.get(instance)
            if before is not None:
                for name, served in services.items():
                    total.setdefault(name, Served()).add(served.minus(before.get(name)))
            self._last[instance] = services
        while len(self._last) > self._max:
            del self._last[next(iter(self._last))]
        return total

    def instances(self) -> Iterable[str]:
        return self._last.keys()
