"""A site task's cgroup on this node: where it is and what it has used, read from the kernel's files.

Docker's stats API costs the daemon a streaming call per container; these files cost a few reads
each. Both hierarchies are read: cgroup v2 (one directory per cgroup: `cpu.stat`, `memory.current`,
`memory.stat`, `memory.events`, `pids.current`, `io.stat`) and cgroup v1 (one tree per controller:
`cpuacct.usage`, `memory.usage_in_bytes`, `memory.oom_control`, `blkio.throttle.io_service_bytes`,
...), whichever the node runs (a hybrid node, v1 controllers beside an empty unified tree, is v1).

Where a container's cgroup lies depends on the engine's cgroup driver and parent (`docker/<id>`
with cgroupfs, `system.slice/docker-<id>.scope` with systemd, `<parent>/<id>` with
`--cgroup-parent`): the first container is looked for in the tree, and the path it was found at
becomes a template for the next ones, so a pass over a thousand tasks searches nothing. On v1 each
controller is a hierarchy of its own, and a container's path may differ between them: a relative
`--cgroup-parent` is placed under the engine's own cgroup in each controller, and an engine started
inside a memory cgroup (a systemd unit with a memory limit, a job) but the root of the others puts
its containers at `<that cgroup>/<parent>/<id>` in memory and `<parent>/<id>` elsewhere. So each
controller is searched and has templates of its own. The network counters live in the task's
network namespace, read through `/proc/<pid>/net/dev` of its main process (Docker's pid for it)
or one in its `cgroup.procs` (which shows only processes of the reader's pid namespace).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.logging_setup import fields

log = logging.getLogger("orchestrator.metrics")
# v1 reports "no limit" as the largest page-aligned signed 64-bit value; anything this large is none.
NO_LIMIT = 2**62
MAX_TEMPLATES = 8
MAX_MISSED = 4096
SEARCH_DEPTH = 5
_V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")


@dataclass(frozen=True, slots=True)
class Usage:
    """One cgroup, read once: counters since the task's container started, and gauges now."""

    cpu_usec: int
    throttled_usec: int
    memory_bytes: int  # the working set: usage minus inactive file cache (what cAdvisor reports)
    oom_kills: int
    pids: int
    io_read_bytes: int
    io_write_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int


@dataclass(frozen=True, slots=True)
class Limits:
    cpus: float | None  # None: no CPU quota
    memory_bytes: int | None  # None: no memory limit


@dataclass(frozen=True, slots=True)
class Cgroup:
    """One container's cgroup: a directory per controller (all the same one on v2)."""

    cpu: Path
    cpuacct: Path
    memory: Path
    io: Path
    pids: Path
    v2: bool


# --- parsers (pure) ------------------------------------------------------------------------------


def keyed(text: str) -> dict[str, int]:
    """`key value` lines (cpu.stat, memory.stat, memory.events, memory.oom_control)."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def io_v2(text: str) -> tuple[int, int]:
    """(read, written) bytes over every device of an `io.stat`."""
    read = written = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                written += int(value)
    return read, written


def io_v1(text: str) -> tuple[int, int]:
    """(read, written) bytes over every device of a `blkio.throttle.io_service_bytes`."""
    read = written = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "Read":
            read += int(parts[2])
        elif len(parts) == 3 and parts[1] == "Write":
            written += int(parts[2])
    return read, written


def cpus_v2(cpu_max: str) -> float | None:
    """`cpu.max` ("max 100000" or "50000 100000") as cores."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def cpus_v1(quota_us: str, period_us: str) -> float | None:
    quota = int(quota_us)
    return None if quota <= 0 else quota / int(period_us)


def memory_limit(text: str) -> int | None:
    """`memory.max` ("max" or bytes) or v1's `memory.limit_in_bytes`."""
    value = text.strip()
    if value == "max":
        return None
    limit = int(value)
    return None if limit >= NO_LIMIT else limit


def net_dev(text: str) -> tuple[int, int]:
    """(received, sent) bytes over every interface of a `/proc/<pid>/net/dev` but loopback."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def working_set(usage: int, stat: dict[str, int], v2: bool) -> int:
    inactive = stat.get("inactive_file" if v2 else "total_inactive_file", 0)
    return max(0, usage - inactive)


# --- the node's hierarchy ------------------------------------------------------------------------


def _read(path: Path) -> str:
    # os.read instead of open(): a pass reads thousands of these small files.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


class Hierarchy:
    """This node's cgroups under `root` (/sys/fs/cgroup; a collector in a container reads the
    host's, mounted elsewhere) and processes under `proc` (/proc, or the host's)."""

    def __init__(self, root: Path, proc: Path = Path("/proc")) -> None:
        self.root = root
        self.proc = proc
        self.v2 = (root / "cgroup.controllers").exists()
        self._controllers = {} if self.v2 else {name: _controller(root, name) for name in _V1_CONTROLLERS}
        # The trees a container is looked for in, the memory controller's first (where a container
        # that ended is found missing): each with its own templates, relative paths with "{id}"
        # where the container id goes.
        trees = [self.base] if self.v2 else list(dict.fromkeys([self.base, *self._controllers.values()]))
        self._templates: dict[Path, list[str]] = {tree: [] for tree in trees}
        self._missed: dict[str, None] = {}  # containers searched for in vain (searched once only)

    @property
    def base(self) -> Path:
        """Where a container is looked for first: the unified tree, or v1's memory controller."""
        return self.root if self.v2 else self._controllers["memory"]

    def find(self, container_id: str) -> Cgroup | None:
        """The container's cgroup, or None when it has none (any more), or not in every
        controller (said once)."""
        found: dict[Path, Path] = {}
        for tree, templates in self._templates.items():
            path = self._locate(tree, templates, container_id)
            if path is None:
                if tree != self.base and container_id not in self._missed:
                    log.warning(
                        "a site task's cgroup is missing from a controller: it is not measured",
                        extra=fields(
                            container=container_id[:12], controller=str(tree), found=[str(p) for p in found.values()]
                        ),
                    )
                self._miss(container_id)
                return None
            found[tree] = path
        if self.v2:
            path = found[self.base]
            return Cgroup(path, path, path, path, path, v2=True)
        cpu, cpuacct, memory, blkio, pids = (found[self._controllers[name]] for name in _V1_CONTROLLERS)
        return Cgroup(cpu, cpuacct, memory, blkio, pids, v2=False)

    def _locate(self, tree: Path, templates: list[str], container_id: str) -> Path | None:
        """The container's directory in one tree: by a template, or searched for once."""
        for template in templates:
            path = tree / template.format(id=container_id)
            if path.is_dir():
                return path
        if container_id in self._missed:
            return None
        found = _search(tree, container_id)
        if found is not None:
            template = found.relative_to(tree).as_posix().replace(container_id, "{id}")
            if template not in templates:
                templates[:] = [template, *templates][:MAX_TEMPLATES]
        return found

    def _miss(self, container_id: str) -> None:
        """Gone meanwhile (or never had one here): not searched for again."""
        self._missed[container_id] = None
        while len(self._missed) > MAX_MISSED:
            del self._missed[next(iter(self._missed))]

    def limits(self, cgroup: Cgroup) -> Limits:
        """Fixed for a container's life (a service update makes a new container): read once."""
        if cgroup.v2:
            cpus = cpus_v2(_read(cgroup.cpu / "cpu.max"))
            memory = memory_limit(_read(cgroup.memory / "memory.max"))
        else:
            cpus = cpus_v1(_read(cgroup.cpu / "cpu.cfs_quota_us"), _read(cgroup.cpu / "cpu.cfs_period_us"))
            memory = memory_limit(_read(cgroup.memory / "memory.limit_in_bytes"))
        return Limits(cpus, memory)

    def usage(self, cgroup: Cgroup, pid: int = 0) -> Usage:
        """OSError (FileNotFoundError mostly) when the cgroup went away meanwhile. `pid`: the
        task's main process in `proc`'s pid namespace, if known (0: one in its cgroup.procs)."""
        stat = keyed(_read(cgroup.memory / "memory.stat"))
        if cgroup.v2:
            cpu = keyed(_read(cgroup.cpu / "cpu.stat"))
            cpu_usec, throttled_usec = cpu.get("usage_usec", 0), cpu.get("throttled_usec", 0)
            memory = working_set(int(_read(cgroup.memory / "memory.current")), stat, v2=True)
            oom_kills = keyed(_read(cgroup.memory / "memory.events")).get("oom_kill", 0)
            io = io_v2(_read(cgroup.io / "io.stat"))
        else:
            cpu_usec = int(_read(cgroup.cpuacct / "cpuacct.usage")) // 1000
            throttled_usec = keyed(_read(cgroup.cpu / "cpu.stat")).get("throttled_time", 0) // 1000
            memory = working_set(int(_read(cgroup.memory / "memory.usage_in_bytes")), stat, v2=False)
            oom_kills = keyed(_read(cgroup.memory / "memory.oom_control")).get("oom_kill", 0)
            io = io_v1(_read(cgroup.io / "blkio.throttle.io_service_bytes"))
        pids = int(_read(cgroup.pids / "pids.current"))
        rx, tx = self._network(cgroup, pid)
        return Usage(cpu_usec, throttled_usec, memory, oom_kills, pids, io[0], io[1], rx, tx)

    def _network(self, cgroup: Cgroup, main: int) -> tuple[int, int]:
        """Through any process of the task (they share its network namespace): its main one, or
        one in its cgroup.procs (which lists only the processes of the reader's pid namespace: a
        collector in a container of its own sees none there); 0, 0 with none."""
        pids = [str(main)] if main > 0 else []
        pids += [p for p in _read(cgroup.pids / "cgroup.procs").split()[:3] if p != "0"]
        for pid in pids:
            try:
                return net_dev(_read(self.proc / pid / "net" / "dev"))
            except OSError:
                continue  # exited meanwhile: the next one
        return 0, 0


def _controller(root: Path, name: str) -> Path:
    """A v1 controller's tree: `root/name`, or a co-mounted one (`cpu,cpuacct`)."""
    if (root / name).is_dir():
        return root / name
    for entry in _listdir(root):
        if name in entry.name.split(",") and entry.is_dir():
            return Path(entry.path)
    return root / name  # absent: reads fail with a clear path


def _listdir(path: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            yield from entries
    except OSError:
        return


def _search(base: Path, container_id: str) -> Path | None:
    """Breadth first, a few levels deep: the directory named for the container (`<id>`,
    `docker-<id>.scope`, ...)."""
    level = [base]
    for _ in range(SEARCH_DEPTH):
        below = []
        for directory in level:
            for entry in _listdir(directory):
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if container_id in entry.name:
                    return Path(entry.path)
                below.append(Path(entry.path))
        level = below
    return None
