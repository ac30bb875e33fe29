"""The node's own totals: its CPU time, its memory and the disk of the sites root (`/proc/stat`,
`/proc/meminfo`, statvfs), for `node.metrics`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class NodeReading:
    cpus: int
    busy_seconds: float  # CPU time the node spent busy since boot (all cores)
    memory_total_bytes: int
    memory_available_bytes: int
    disk_total_bytes: int | None  # the sites root's file system; None: not mounted here
    disk_free_bytes: int | None


def busy_seconds(stat: str) -> tuple[int, float]:
    """(cores, busy seconds) from `/proc/stat`: everything but idle and iowait."""
    cores = 0
    busy = 0.0
    for line in stat.splitlines():
        if line.startswith("cpu "):
            fields = [int(v) for v in line.split()[1:]]
            # guest time is counted in user time already
            busy = (sum(fields[:8]) - fields[3] - fields[4]) / TICKS
        elif line.startswith("cpu"):
            cores += 1
    return cores, busy


def meminfo(text: str) -> tuple[int, int]:
    """(total, available) bytes from `/proc/meminfo`."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    return values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))


def read_node(proc: Path, sites_root: Path) -> NodeReading:
    cores, busy = busy_seconds((proc / "stat").read_text())
    total, available = meminfo((proc / "meminfo").read_text())
    disk_total: int | None = None
    disk_free: int | None = None
    try:
        disk = os.statvfs(sites_root)
        disk_total, disk_free = disk.f_blocks * disk.f_frsize, disk.f_bavail * disk.f_frsize
    except OSError:
        pass  # the sites root is not mounted on this node
    return NodeReading(cores, busy, total, available, disk_total, disk_free)
