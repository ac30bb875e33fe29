"""Metrics (docs/metrics.md): a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from orchestrator.config.base import CsvList, Group


class MetricsSettings(Group):
    # --- metrics ------------------------------------------------------------------------------
    # Every this many seconds, on the wall clock's grid: a `site.metrics` per site, a `node.metrics`
    # per node, an `orchestrator.metrics` per replica; 0: no metrics.
    metrics_seconds: float = Field(default=60.0, ge=0)
    # Collect this node's sites inside `orchestrator run`; off where `orchestrator collect` runs on
    # every site node (compose.yaml). A collector reads /sys/fs/cgroup and /proc under this root.
    metrics_collector: bool = True
    metrics_host_root: Path = Path("/")
    # Collectors send samples to this exchange (the `collector` user may write only there), from
    # these broker users; Director's `metrics.*` requests wait in this queue.
    collector_exchange: str = "orchestrator.collector"
    collector_publishers: Annotated[CsvList, Field(default_factory=lambda: ["collector", "orchestrator"])]
    metrics_queue: str = "orchestrator.metrics-requests"
    # The orchestrator's own figures as a Prometheus textfile for node-exporter; unset: none.
    metrics_textfile: Path | None = None

    @property
    def sample_lifetime_seconds(self) -> float:
        """How long a collector's sample may wait unread before the broker drops it. Its kills
        and restarts are in no other sample, and a late one still counts (in the next window),
        so a busy replica gets a minute whatever the period; the queue's length bounds the rest."""
        return max(2 * self.metrics_seconds, 60.0)
