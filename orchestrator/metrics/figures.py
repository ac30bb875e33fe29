"""The orchestrator's own figures, for operators: messages settled by outcome, retries, dead
letters, deploy latency, queue depths and site file bytes. Counted as they happen (`observe`,
called by the settler for every delivery it settles), published every period as an
`orchestrator.metrics` event (the window's counts) and written to a Prometheus textfile for
node-exporter (the counts since start): no HTTP port is opened.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from orchestrator_contract.metrics import Durations, Handled, OrchestratorMetrics, Window, metrics_event_id

# Site events whose outcome ends a deploy, and the outcome that says it served.
DEPLOYING = ("site.created", "site.updated")
DEPLOYED = "site.deployed"
# Seconds; the textfile's histogram of deploy latency.
DEPLOY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Durations kept per window for its percentiles (more deploys than this in one period: a sample).
MAX_DURATIONS = 10_000
# Distinct (exchange, type, outcome) kept: types come from routing keys, i.e. outside input.
MAX_KINDS = 1_000
OTHER = "other"


@dataclass
class _Counts:
    handled: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    retries: int = 0
    dead_letters: int = 0
    deploys: list[float] = field(default_factory=list)


FileTotals = Callable[[], tuple[int, int]]  # bytes of site files (read, written) since start


class Figures:
    def __init__(self, replica: str | None = None, file_totals: FileTotals | None = None) -> None:
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self.file_totals = file_totals
        self._files_before = (0, 0)
        self._window = _Counts()
        self._total = _Counts()
        self._deploy_buckets = [0] * (len(DEPLOY_BUCKETS) + 1)
        self._deploy_sum = 0.0
        self.queues: dict[str, int] = {}

    def observe(self, exchange: str, type_: str, outcome: str, seconds: float) -> None:
        """One delivery settled (`bus.settlement`)."""
        kind = (exchange, type_, outcome)
        for counts in (self._window, self._total):
            if kind not in counts.handled and len(counts.handled) >= MAX_KINDS:
                kind = (exchange, OTHER, outcome)
            counts.handled[kind] += 1
            if outcome == "retry_later":
                counts.retries += 1
            elif outcome == "dead_lettered":
                counts.dead_letters += 1
        if type_ in DEPLOYING and outcome == DEPLOYED:
            if len(self._window.deploys) < MAX_DURATIONS:
                self._window.deploys.append(seconds)
            self._deploy_sum += seconds
            self._deploy_buckets[_bucket(seconds)] += 1

    def _files(self) -> tuple[int, int]:
        return self.file_totals() if self.file_totals is not None else (0, 0)

    def close(self, start: datetime, end: datetime, active: bool) -> OrchestratorMetrics:
        """The window's event; the next window starts from zero."""
        window, self._window = self._window, _Counts()
        files, before = self._files(), self._files_before
        self._files_before = files
        return OrchestratorMetrics(
            event_id=metrics_event_id(self.replica, "orchestrator", end),
            replica=self.replica,
            active=active,
            window=Window(start=start, end=end, seconds=(end - start).total_seconds()),
            handled=[
                Handled(exchange=e, type=t, outcome=o, count=n) for (e, t, o), n in sorted(window.handled.items())
            ],
            retries=window.retries,
            dead_letters=window.dead_letters,
            deploy_seconds=_durations(window.deploys),
            queues=dict(self.queues),
            file_bytes_read=files[0] - before[0],
            file_bytes_written=files[1] - before[1],
        )

    def textfile(self, active: bool) -> str:
        """Prometheus' text format: the counts since this process started."""
        replica = _label(self.replica)
        lines = [
            "# HELP orchestrator_messages_total Messages settled, by exchange, type and outcome.",
            "# TYPE orchestrator_messages_total counter",
        ]
        for (exchange, type_, outcome), n in sorted(self._total.handled.items()):
            labels = (
                f'replica="{replica}",exchange="{_label(exchange)}",type="{_label(type_)}",outcome="{_label(outcome)}"'
            )
            lines.append(f"orchestrator_messages_total{{{labels}}} {n}")
        lines += _counter(
            "orchestrator_retries_total", "Site events sent to the delayed retry.", replica, self._total.retries
        )
        lines += _counter(
            "orchestrator_dead_letters_total", "Messages dead-lettered.", replica, self._total.dead_letters
        )
        lines += [
            "# HELP orchestrator_deploy_seconds From a site event's receipt to its site.deployed.",
            "# TYPE orchestrator_deploy_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip((*DEPLOY_BUCKETS, float("inf")), self._deploy_buckets, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'orchestrator_deploy_seconds_bucket{{replica="{replica}",le="{le}"}} {cumulative}')
        lines.append(f'orchestrator_deploy_seconds_sum{{replica="{replica}"}} {self._deploy_sum:.3f}')
        lines.append(f'orchestrator_deploy_seconds_count{{replica="{replica}"}} {cumulative}')
        lines += [
            "# HELP orchestrator_queue_messages Messages waiting in a queue.",
            "# TYPE orchestrator_queue_messages gauge",
        ]
        lines += [
            f'orchestrator_queue_messages{{replica="{replica}",queue="{_label(q)}"}} {n}'
            for q, n in sorted(self.queues.items())
        ]
        lines += [
            "# HELP orchestrator_file_bytes_total Bytes of site files moved for Director.",
            "# TYPE orchestrator_file_bytes_total counter",
        ]
        for direction, n in zip(("read", "written"), self._files(), strict=True):
            lines.append(f'orchestrator_file_bytes_total{{replica="{replica}",direction="{direction}"}} {n}')
        lines += [
            "# HELP orchestrator_active Whether this replica consumes the site events.",
            "# TYPE orchestrator_active gauge",
        ]
        lines.append(f'orchestrator_active{{replica="{replica}"}} {int(active)}')
        return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Atomically (node-exporter never reads half a file): a temporary beside it, renamed over it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def _counter(name: str, help_: str, replica: str, value: int) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} counter", f'{name}{{replica="{replica}"}} {value}']


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")[:200]


def _bucket(seconds: float) -> int:
    for i, bound in enumerate(DEPLOY_BUCKETS):
        if seconds <= bound:
            return i
    return len(DEPLOY_BUCKETS)


def _durations(values: list[float]) -> Durations | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return Durations(count=len(ordered), p50=at(0.5), p95=at(0.95), max=round(ordered[-1], 3))
