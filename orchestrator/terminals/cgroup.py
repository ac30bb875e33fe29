"""The cgroup every terminal session container on this node runs under: one bound on CPU, memory
and processes for all sessions together (`TERMINALS_MAX_CPUS`, `TERMINALS_MAX_MEMORY`,
`TERMINALS_MAX_PIDS`), on top of each session's own site limits. Without it, every session got its
site's limits again beside the site's task: three CPU-bound shells per site, on the orchestrator's
node.

`TerminalsCap.of` and `limit_files` decide (pure); `enforce` makes the cgroup and writes its limits,
cgroup v1 (one hierarchy per controller) or v2 (unified), and reads them back.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.errors import PromiseNotKept
from orchestrator_contract.sites import memory_bytes

PERIOD_US = 100_000  # the CFS period every quota here is a share of (Docker's own)
NANO = 1_000_000_000


@dataclass(frozen=True)
class TerminalsCap:
    cgroup: str  # relative to the cgroup root, e.g. "director-terminals"
    nano_cpus: int
    memory_bytes: int
    pids: int

    @classmethod
    def of(cls, settings: Settings) -> TerminalsCap | None:
        if not settings.terminals_cgroup:
            return None
        return cls(
            cgroup=settings.terminals_cgroup,
            nano_cpus=round(settings.terminals_max_cpus * NANO),
            memory_bytes=memory_bytes(settings.terminals_max_memory),
            pids=settings.terminals_max_pids,
        )

    @property
    def parent(self) -> str:
        """As Docker's `CgroupParent` takes it (cgroupfs driver: a path from the root)."""
        return f"/{self.cgroup}"

    @property
    def quota_us(self) -> int:
        return max(1000, self.nano_cpus * PERIOD_US // NANO)

    def clamp(self, nano_cpus: int, memory_bytes: int) -> tuple[int, int]:
        """A session's own limits, never above the bound of all (cgroup v1 refuses a child's CPU
        quota above its parent's)."""
        return min(nano_cpus, self.nano_cpus), min(memory_bytes, self.memory_bytes)


def limit_files(cap: TerminalsCap, unified: bool) -> dict[str, str]:
    """What to write where, relative to the cgroup root."""
    if unified:
        return {
            f"{cap.cgroup}/cpu.max": f"{cap.quota_us} {PERIOD_US}",
            f"{cap.cgroup}/memory.max": str(cap.memory_bytes),
            f"{cap.cgroup}/pids.max": str(cap.pids),
        }
    return {
        f"cpu/{cap.cgroup}/cpu.cfs_period_us": str(PERIOD_US),
        f"cpu/{cap.cgroup}/cpu.cfs_quota_us": str(cap.quota_us),
        f"memory/{cap.cgroup}/memory.limit_in_bytes": str(cap.memory_bytes),
        f"pids/{cap.cgroup}/pids.max": str(cap.pids),
    }


def enforce(cap: TerminalsCap, root: Path) -> None:
    """Make the cgroup and set its limits, or PromiseNotKept saying why not."""
    unified = (root / "cgroup.controllers").exists()
    try:
        if unified:
            # Session containers need the three controllers in the bound's own cgroup.
            for where in [root, *(root / part for part in _ancestors(cap.cgroup))]:
                where.mkdir(exist_ok=True)
                with contextlib.suppress(OSError):  # already on, or set by whoever owns it
                    (where / "cgroup.subtree_control").write_text("+cpu +memory +pids")
        for relative, value in limit_files(cap, unified).items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value)
            if path.read_text().strip() != value:
                raise OSError(f"{path} reads {path.read_text().strip()!r}, not {value!r}")
    except OSError as exc:
        raise PromiseNotKept(
            f"terminals cannot be bounded together under the cgroup {cap.cgroup!r} in {root} ({exc}): "
            "mount the node's cgroup hierarchy writable there (CGROUP_ROOT) or set TERMINALS_CGROUP to '' "
            "(see docs/security.md#terminals)"
        ) from exc


def _ancestors(cgroup: str) -> list[str]:
    parts = cgroup.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
