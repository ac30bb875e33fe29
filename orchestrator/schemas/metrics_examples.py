"""The examples of `schemas/` for metrics: the periodic events, and a request and the reply of every
metrics request (`schemas.export` adds them to the others)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel

from orchestrator_contract.metrics import (
    DiskSpace,
    Durations,
    Handled,
    Latency,
    MetricsNodes,
    MetricsReply,
    MetricsSite,
    MetricsSites,
    NodeMetrics,
    NodesResult,
    OrchestratorMetrics,
    SiteMetrics,
    SiteMetricsResult,
    SitesPage,
    SiteUsage,
    Window,
)

_START, _END = datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
_WINDOW = Window(start=_START, end=_END, seconds=60.0)


def _site() -> SiteMetrics:
    return SiteMetrics(
        event_id=uuid.UUID("00000000-0000-5000-8000-000000000008"),
        occurred_at=_END.replace(second=2),
        site_id=1,
        window=_WINDOW,
        state="running",
        tasks=1,
        nodes=["director-w1"],
        usage=SiteUsage(
            cpu_seconds=1.52,
            cpu_limit=0.5,
            cpu_share=0.0507,
            cpu_throttled_seconds=0.0,
            memory_bytes=23552000,
            memory_limit_bytes=268435456,
            pids=5,
            network_rx_bytes=48210,
            network_tx_bytes=912044,
            block_read_bytes=0,
            block_write_bytes=4096,
        ),
        oom_kills=0,
        restarts=0,
        requests={"2xx": 118, "5xx": 2},
        latency_ms=Latency(p50=3.1, p95=21.0, p99=48.2),
    )


def _node() -> NodeMetrics:
    return NodeMetrics(
        event_id=uuid.UUID("00000000-0000-5000-8000-000000000009"),
        occurred_at=_END.replace(second=2),
        node_id="x2k9q4m1n8b3v6c5z0l2j4h7p",
        hostname="director-w1",
        window=_WINDOW,
        cpus=2,
        cpu_seconds=31.4,
        cpu_share=0.2617,
        memory_total_bytes=25275764736,
        memory_available_bytes=23948910592,
        sites_root=DiskSpace(total_bytes=105089261568, free_bytes=81604378624),
        sites_running=42,
    )


def _own() -> OrchestratorMetrics:
    return OrchestratorMetrics(
        event_id=uuid.UUID("00000000-0000-5000-8000-00000000000a"),
        occurred_at=_END,
        replica="3f9c2a1b7d4e:1",
        active=True,
        window=_WINDOW,
        handled=[
            Handled(exchange="director.sites", type="site.created", outcome="site.deployed", count=3),
            Handled(exchange="director.files", type="files.read", outcome="files.read", count=40),
        ],
        retries=0,
        dead_letters=0,
        deploy_seconds=Durations(count=3, p50=6.2, p95=9.8, max=9.8),
        queues={"orchestrator.site-events": 0, "orchestrator.file-requests": 0},
        file_bytes_read=41943040,
        file_bytes_written=0,
    )


def metrics_examples() -> dict[str, BaseModel]:
    site, node = _site(), _node()
    return {
        "site.metrics": site,
        "node.metrics": node,
        "orchestrator.metrics": _own(),
        "metrics.site": MetricsSite(site_id=1),
        "metrics.site.reply": MetricsReply(result=SiteMetricsResult(site_id=1, metrics=site)),
        "metrics.sites": MetricsSites(after=None, limit=1),
        "metrics.sites.reply": MetricsReply(result=SitesPage(sites=[site], next_after=1)),
        "metrics.nodes": MetricsNodes(),
        "metrics.nodes.reply": MetricsReply(result=NodesResult(nodes=[node])),
    }
