"""What a node's collector sends the orchestrator every period: its site tasks' window and its own
totals (`orchestrator.collector` exchange, routing key `sample`). Internal to the orchestrator's
processes: Director reads the `site.metrics` and `node.metrics` events made from it."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SAMPLE_KEY = "sample"
# Sites per message: a node of a thousand sites sends two or three messages of ~150 KB.
SITES_PER_PART = 400
MAX_PARTS = 100
MAX_SAMPLE_BYTES = 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class TaskWindow(_Model):
    """One site's tasks on the node over the window (see `windows.SiteWindow`)."""

    service: str = Field(pattern=r"^site_[0-9]{4,10}$")
    tasks: int = Field(ge=0)
    cpu_seconds: float = Field(ge=0)
    cpu_throttled_seconds: float = Field(ge=0)
    cpu_limit: float | None = Field(default=None, gt=0)
    memory_bytes: int = Field(ge=0)
    memory_limit_bytes: int | None = Field(default=None, gt=0)
    oom_kills: int = Field(ge=0)
    restarts: int = Field(ge=0)
    pids: int = Field(ge=0)
    net_rx_bytes: int = Field(ge=0)
    net_tx_bytes: int = Field(ge=0)
    io_read_bytes: int = Field(ge=0)
    io_write_bytes: int = Field(ge=0)


class NodeWindow(_Model):
    cpus: int = Field(ge=0)
    cpu_seconds: float = Field(ge=0, description="Busy CPU time of the whole node in the window (all cores).")
    memory_total_bytes: int = Field(ge=0)
    memory_available_bytes: int = Field(ge=0)
    disk_total_bytes: int | None = Field(default=None, ge=0)
    disk_free_bytes: int | None = Field(default=None, ge=0)
    sites_running: int = Field(ge=0, description="Site tasks running on the node at the window's end.")


class NodeSample(_Model):
    node_id: str = Field(min_length=1, max_length=64)
    hostname: str = Field(max_length=253)
    start: AwareDatetime
    end: AwareDatetime
    part: int = Field(ge=0, lt=MAX_PARTS)
    parts: int = Field(ge=1, le=MAX_PARTS)
    node: NodeWindow | None = Field(default=None, description="In part 0 only.")
    sites: list[TaskWindow] = Field(max_length=SITES_PER_PART)
