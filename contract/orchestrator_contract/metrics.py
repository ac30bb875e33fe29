"""What each site uses and serves, each node holds, and the orchestrator itself did: periodic events
on `orchestrator.results` (`site.metrics`, `node.metrics`, `orchestrator.metrics`) and the current
values on request (`metrics.site`, `metrics.sites`, `metrics.nodes` on `director.files`, answered
like file requests: `{"ok": true, "result": ...}` at `reply_to`).

Every figure covers a window: the period's points on the wall clock (`METRICS_SECONDS` apart,
multiples of it since the epoch), the same for every node and replica. Where each number comes
from is docs/metrics.md's subject; in short: cgroup files of the task's container on the node
that runs it (read by that node's collector), and Traefik's own counters for requests.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from orchestrator_contract.base import Model, SiteId

# Sites per page of `metrics.sites`.
MAX_PAGE = 500
DEFAULT_PAGE = 100
StatusClass = Annotated[str, Field(pattern=r"^[1-5]xx$")]


class Window(Model):
    start: AwareDatetime = Field(description="The window's first instant (a multiple of the period).")
    end: AwareDatetime = Field(description="Its last: the figures are as of this instant.")
    seconds: float = Field(gt=0)


class SiteUsage(Model):
    """What the site's tasks used, summed over its tasks on every node (gauges as of `end`)."""

    cpu_seconds: float = Field(ge=0, description="CPU time used in the window (cgroup cpu.stat usage_usec).")
    cpu_limit: float | None = Field(description="Cores the site may use (its limit, cgroup cpu.max); null: none.")
    cpu_share: float | None = Field(
        ge=0, description="cpu_seconds / (window seconds x cpu_limit): 1.0 is the limit used all window long."
    )
    cpu_throttled_seconds: float = Field(
        ge=0, description="Time its tasks were held back for reaching the limit (cpu.stat throttled_usec)."
    )
    memory_bytes: int = Field(
        ge=0, description="Working set: memory in use minus inactive file cache (memory.current - inactive_file)."
    )
    memory_limit_bytes: int | None = Field(description="Its memory limit (memory.max); null: none.")
    pids: int = Field(ge=0, description="Processes and threads (pids.current).")
    network_rx_bytes: int = Field(ge=0, description="Received in the window by its network namespace.")
    network_tx_bytes: int = Field(ge=0, description="Sent in the window by its network namespace.")
    block_read_bytes: int = Field(ge=0, description="Read from block devices in the window (io.stat rbytes).")
    block_write_bytes: int = Field(ge=0, description="Written to block devices in the window (io.stat wbytes).")


class Latency(Model):
    """Response time through Traefik, interpolated within its histogram's buckets."""

    p50: float = Field(ge=0, description="Milliseconds.")
    p95: float = Field(ge=0)
    p99: float = Field(ge=0)


SiteState = Literal["running", "no_task", "unmeasured"]


class SiteMetrics(Model):
    """One site over one window (routing key `site.metrics`), for every site the swarm holds.

    `state`: `running`, its tasks were measured; `no_task`, the swarm runs no task of it (stopped,
    or not started again after a crash): `usage` is null, not zeros; `unmeasured`, a task runs but
    no collector reported its node this window. Delivered at least once: the same site and window
    always carry the same `event_id`.
    """

    event_id: uuid.UUID
    type: Literal["site.metrics"] = "site.metrics"
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    site_id: SiteId
    window: Window
    state: SiteState
    tasks: int = Field(ge=0, description="Tasks running at the window's end.")
    nodes: list[str] = Field(description="Host names of the nodes its tasks ran on.")
    usage: SiteUsage | None
    oom_kills: int = Field(ge=0, description="Processes of the site killed for memory in the window.")
    restarts: int = Field(
        ge=0,
        description="Times a task ended without being asked in the window (exit, crash, OOM kill of its main "
        "process, failed health check); deploys and requested restarts do not count.",
    )
    requests: dict[StatusClass, int] = Field(
        description='Requests Traefik passed to the site in the window, by status class: {"2xx": 118, "5xx": 2}.'
    )
    latency_ms: Latency | None = Field(description="Of those requests; null without any.")


class DiskSpace(Model):
    total_bytes: int = Field(ge=0)
    free_bytes: int = Field(ge=0, description="Available to unprivileged writers (statvfs f_bavail).")


class NodeMetrics(Model):
    """One node that runs sites, over one window (routing key `node.metrics`), for operators."""

    event_id: uuid.UUID
    type: Literal["node.metrics"] = "node.metrics"
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    node_id: str
    hostname: str
    window: Window
    cpus: int = Field(ge=0)
    cpu_seconds: float = Field(ge=0, description="Busy CPU time of the whole node (all cores, /proc/stat).")
    cpu_share: float | None = Field(ge=0, description="cpu_seconds / (window seconds x cpus).")
    memory_total_bytes: int = Field(ge=0)
    memory_available_bytes: int = Field(ge=0, description="MemAvailable of /proc/meminfo.")
    sites_root: DiskSpace | None = Field(description="The file system of the sites root; null: not mounted there.")
    sites_running: int = Field(ge=0, description="Site tasks running on the node at the window's end.")


class Handled(Model):
    exchange: str = Field(description="Where the message came from (`director.sites`, `director.files`, ...).")
    type: str = Field(description="The message's routing key.")
    outcome: str = Field(description="`deployed`, `retry_later`, `dead_lettered`, ...")
    count: int = Field(ge=0)


class Durations(Model):
    count: int = Field(ge=0)
    p50: float = Field(ge=0, description="Seconds.")
    p95: float = Field(ge=0)
    max: float = Field(ge=0)


class OrchestratorMetrics(Model):
    """One replica's own figures over one window (routing key `orchestrator.metrics`), for operators."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: Literal["orchestrator.metrics"] = "orchestrator.metrics"
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    replica: str = Field(description="The replica's host name and process id.")
    active: bool = Field(description="Whether it was the active replica (the one consuming site events).")
    window: Window
    handled: list[Handled] = Field(description="Messages settled in the window, by exchange, type and outcome.")
    retries: int = Field(ge=0, description="Site events sent to the delayed-retry queue.")
    dead_letters: int = Field(ge=0, description="Messages dead-lettered.")
    deploy_seconds: Durations | None = Field(description="From receiving a site event to its `site.deployed`.")
    queues: dict[str, int] = Field(description="Messages waiting in each of the orchestrator's queues now.")
    file_bytes_read: int = Field(ge=0, description="Bytes of site files read for Director.")
    file_bytes_written: int = Field(ge=0, description="Bytes of site files written for Director.")


# --- the current values on request ----------------------------------------------------------------


class MetricsSite(Model):
    """The latest window of one site."""

    type: Literal["metrics.site"] = "metrics.site"
    site_id: SiteId


class MetricsSites(Model):
    """The latest window of every site, a page at a time, by site id."""

    type: Literal["metrics.sites"] = "metrics.sites"
    after: int | None = Field(default=None, ge=0, description="`next_after` of the previous page; null: the first.")
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class MetricsNodes(Model):
    """The latest window of every node."""

    type: Literal["metrics.nodes"] = "metrics.nodes"


MetricsRequest = MetricsSite | MetricsSites | MetricsNodes
METRICS_REQUESTS: dict[str, type[MetricsRequest]] = {
    "metrics.site": MetricsSite,
    "metrics.sites": MetricsSites,
    "metrics.nodes": MetricsNodes,
}


class SiteMetricsResult(Model):
    site_id: SiteId
    metrics: SiteMetrics | None = Field(description="null: no window of it yet (a site newer than the last one).")


class SitesPage(Model):
    sites: list[SiteMetrics]
    next_after: int | None = Field(description="Pass it as `after` for the next page; null: this was the last.")


class NodesResult(Model):
    nodes: list[NodeMetrics]


MetricsResult = SiteMetricsResult | SitesPage | NodesResult
# What a successful reply of each request carries as `result`.
METRICS_RESULTS: dict[str, type[MetricsResult]] = {
    "metrics.site": SiteMetricsResult,
    "metrics.sites": SitesPage,
    "metrics.nodes": NodesResult,
}


class MetricsReply(Model):
    """The request succeeded; `result` is the request's (see `METRICS_RESULTS`). A failed one gets
    the file requests' `ErrorReply`."""

    ok: Literal[True] = True
    result: MetricsResult


def metrics_event_id(deployment: str, subject: str, end: datetime) -> uuid.UUID:
    """The same for the same subject and window in every replica: a takeover's duplicate is one."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"orchestrator:{deployment}:{subject}:{end.timestamp():.3f}")
