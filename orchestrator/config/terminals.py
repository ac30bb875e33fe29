"""Web terminals: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from orchestrator.config.base import Group


class TerminalSettings(Group):
    # --- terminals ------------------------------------------------------------------------------
    # Open sessions per site.
    terminal_max_per_site: int = Field(default=3, ge=1)
    # Sessions this process holds at once, whatever the sites.
    terminal_max_total: int = Field(default=100, ge=1)
    # Output a session may send; past it the shell waits (nothing is dropped).
    terminal_output_bytes_per_second: int = Field(default=256 * 1024, ge=1024)
    # A session without input for this long is closed; none lives longer than the lifetime.
    terminal_idle_seconds: float = Field(default=900.0, gt=0)
    terminal_max_lifetime_seconds: float = Field(default=8 * 3600.0, gt=0)
    # Output is gathered this long (or up to `terminal_batch_bytes`) into one message.
    terminal_batch_seconds: float = Field(default=0.003, ge=0)
    terminal_batch_bytes: int = Field(default=16 * 1024, ge=1024)
    # Network of session containers: none at all by default, so sessions of different sites cannot
    # reach each other, the host or the sites' network ("bridge": outbound access, e.g. git).
    terminal_network: str = "none"
    # Every session container on a node runs under this cgroup (relative to `cgroup_root`), which
    # bounds them all together, whatever the sites' own limits: at most `terminals_max_cpus` CPUs,
    # `terminals_max_memory` and `terminals_max_pids` processes (made and set at start; the
    # orchestrator refuses to start where it cannot). "": no shared bound (each session keeps its
    # site's limits only).
    terminals_cgroup: str = Field(
        default="director-terminals", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*)?$"
    )
    terminals_max_cpus: float = Field(default=1.0, gt=0)
    terminals_max_memory: str = "1Gi"
    terminals_max_pids: int = Field(default=2048, ge=16)
    # Where this node's cgroup hierarchy is mounted (compose mounts the host's there).
    cgroup_root: Path = Path("/sys/fs/cgroup")
