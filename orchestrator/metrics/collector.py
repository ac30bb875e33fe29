"""The collector of one node: every period, reads its site tasks' cgroups and sends the window.

It runs wherever sites run: inside `orchestrator run` when that process sits on the node (the
local stack, the tests), and as `orchestrator collect` on every site node in production (a global
service: compose.yaml), on the node's own Docker engine. Passes fall on a grid of the wall clock
(every multiple of the period since the epoch), the same on every node and in every process, so
windows of different collectors and of the orchestrator's Traefik scrapes line up, and a window
is named by its end.

A pass costs no Docker call: the containers are listed again only after Docker's event stream
said one started or ended (or the stream was lost), and each container's cgroup is found once.
The files are read in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from orchestrator.errors import OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.metrics.cgroups import Cgroup, Hierarchy, Limits
from orchestrator.metrics.node import read_node
from orchestrator.metrics.samples import SITES_PER_PART, NodeSample, NodeWindow, TaskWindow
from orchestrator.metrics.windows import Events, Ledger, Reading, SiteWindow
from orchestrator.swarm.changes import DockerChange
from orchestrator.swarm.containers import Task

log = logging.getLogger("orchestrator.metrics")
SITE_PREFIX = "site_"

Send = Callable[[NodeSample], Awaitable[bool]]


class Containers(Protocol):
    """This node's Docker engine (swarm/containers.py; a fake in the unit tests)."""

    async def identity(self) -> tuple[str, str]:
        """(swarm node id, host name)."""

    async def site_tasks(self) -> list[Task]:
        """The running containers of site services on this engine."""


def next_pass(now: float, period: float) -> float:
    """The next point of the grid after `now`."""
    return (math.floor(now / period) + 1) * period


@dataclass(frozen=True)
class Pass:
    """What one pass read."""

    at: float
    readings: list[Reading]
    node_busy: float
    node: NodeWindow


class Collector:
    def __init__(
        self,
        containers: Containers,
        hierarchy: Hierarchy,
        send: Send,
        *,
        period: float,
        sites_root: Path,
        active: asyncio.Event | None = None,
    ) -> None:
        """`active`: send only while it is set (inside `orchestrator run`: while this replica is
        the active one; the standby reads on, so a takeover starts with its baselines)."""
        self._containers = containers
        self._hierarchy = hierarchy
        self._send = send
        self._period = period
        self._sites_root = sites_root
        self._active = active
        self.events = Events()
        self._ledger = Ledger()
        self._tasks: list[Task] = []
        self._cgroups: dict[str, tuple[Cgroup, Limits | None]] = {}  # container id -> its cgroup
        self._identity: tuple[str, str] | None = None
        self._node_busy: float | None = None
        self.passes = 0

    def on_change(self, change: DockerChange | None) -> None:
        """A listener of this engine's event stream (`swarm.changes.DockerChanges`)."""
        if change is None:
            self.on_event("lost", "", "")
        elif change.type == "container":
            self.on_event(change.action, change.attributes.get("name", ""), change.service_name)

    def on_event(self, action: str, container_name: str, service: str) -> None:
        """A container event of this engine (`swarm.changes`); `action` "lost": the stream was."""
        if action == "lost":
            self.events.relist = True
        elif service.startswith(SITE_PREFIX):
            self.events.on(action, container_name, service)

    async def run(self) -> None:
        while True:
            at = next_pass(time.time(), self._period)
            await asyncio.sleep(max(0.0, at - time.time()))
            try:
                await self.collect(at)
            except OrchestratorError as exc:
                log.warning("metrics pass failed", extra=fields(error=exc.message))
            except Exception:  # keep collecting next period, whatever one pass met
                log.exception("metrics pass failed")

    @property
    def last_pass(self) -> float | None:
        """When the last pass was (epoch seconds), for the heartbeat."""
        return self._ledger.last_pass

    async def collect(self, at: float) -> list[NodeSample]:
        """One pass at grid time `at`: read, close the window, send it (when active)."""
        if self._identity is None:
            self._identity = await self._containers.identity()
        if self.events.relist:
            self.events.relist = False
            try:
                self._tasks = await self._containers.site_tasks()
            except OrchestratorError:
                self.events.relist = True
                raise
        done = await asyncio.to_thread(self._read, at, list(self._tasks))
        previous = self._ledger.last_pass
        windows = self._ledger.close(at, done.readings, self.events)
        busy_before, self._node_busy = self._node_busy, done.node_busy
        self.passes += 1
        if windows is None or previous is None:
            return []
        if ended := [w for w in windows if w.oom_kills or w.restarts]:
            first = ended[0]
            log.info(
                "site tasks ended unasked",
                extra=fields(sites=len(ended), first=first.service, oom_kills=first.oom_kills, restarts=first.restarts),
            )
        node = done.node.model_copy(update={"cpu_seconds": max(0.0, done.node_busy - (busy_before or 0.0))})
        samples = list(self._samples(previous, at, windows, node))
        if self._active is None or self._active.is_set():
            for sample in samples:
                if not await self._send(sample):
                    log.warning("metrics sample not sent", extra=fields(end=sample.end.isoformat()))
                    break
        return samples

    def _read(self, at: float, tasks: list[Task]) -> Pass:
        readings = []
        unreadable: list[str] = []
        for task in tasks:
            found = self._cgroups.get(task.container_id)
            if found is None:
                cgroup = self._hierarchy.find(task.container_id)
                if cgroup is None:
                    readings.append(Reading(task, None, None))
                    continue
                try:
                    found = (cgroup, self._hierarchy.limits(cgroup))
                except OSError:
                    found = (cgroup, None)
                self._cgroups[task.container_id] = found
            try:
                usage = self._hierarchy.usage(found[0], task.pid)
            except (OSError, ValueError) as exc:
                usage = None  # ended meanwhile, as a rule
                if found[0].memory.is_dir():  # not ended: said, for it would go unmeasured unnoticed
                    unreadable.append(f"{task.name}: {exc!s:.400}")
            readings.append(Reading(task, usage, found[1]))
        if unreadable:
            log.warning(
                "site tasks' cgroups could not be read", extra=fields(tasks=len(unreadable), first=unreadable[0])
            )
        current = {task.container_id for task in tasks}
        for container_id in [c for c in self._cgroups if c not in current]:
            del self._cgroups[container_id]
        reading = read_node(self._hierarchy.proc, self._sites_root)
        running = sum(1 for r in readings if r.usage is not None)
        node = NodeWindow(
            cpus=reading.cpus,
            cpu_seconds=0.0,
            memory_total_bytes=reading.memory_total_bytes,
            memory_available_bytes=reading.memory_available_bytes,
            disk_total_bytes=reading.disk_total_bytes,
            disk_free_bytes=reading.disk_free_bytes,
            sites_running=running,
        )
        return Pass(at, readings, reading.busy_seconds, node)

    def _samples(self, start: float, end: float, windows: list[SiteWindow], node: NodeWindow) -> Iterator[NodeSample]:
        assert self._identity is not None
        node_id, hostname = self._identity
        entries = [_entry(w) for w in windows]
        parts = max(1, math.ceil(len(entries) / SITES_PER_PART))
        for part in range(parts):
            yield NodeSample(
                node_id=node_id,
                hostname=hostname,
                start=datetime.fromtimestamp(start, UTC),
                end=datetime.fromtimestamp(end, UTC),
                part=part,
                parts=parts,
                node=node if part == 0 else None,
                sites=entries[part * SITES_PER_PART : (part + 1) * SITES_PER_PART],
            )


def _entry(w: SiteWindow) -> TaskWindow:
    return TaskWindow(
        service=w.service,
        tasks=w.tasks,
        cpu_seconds=w.cpu_usec / 1e6,
        cpu_throttled_seconds=w.throttled_usec / 1e6,
        cpu_limit=w.cpu_limit,
        memory_bytes=w.memory_bytes,
        memory_limit_bytes=w.memory_limit_bytes,
        oom_kills=w.oom_kills,
        restarts=w.restarts,
        pids=w.pids,
        net_rx_bytes=w.net_rx_bytes,
        net_tx_bytes=w.net_tx_bytes,
        io_read_bytes=w.io_read_bytes,
        io_write_bytes=w.io_write_bytes,
    )
