"""A node's site tasks over a window, from two passes over their cgroups and Docker's events between.

Pure bookkeeping, no I/O: the collector (`collector.py`) reads, this adds up.

- A cgroup's counters (CPU, I/O, network, OOM kills) count from its container's start, so a
  window is the difference between the counters at its end and at its start; a container that
  started within the window counts from zero, and one seen for the first time that was already
  running (the collector just started) gives its baseline only. Nothing is counted twice: each
  container's counters are carried from one pass to the next, never re-read from an older point.
- A container that ended within the window took its last counters with it: its CPU and I/O since
  the previous pass are lost, but its OOM kills are not (Docker's `oom` events are counted too,
  and a container's kills are the larger of the two counts, so the one counted in both counts once).
- `restarts` are exits nobody asked for: a task's container that died without a stop or kill
  from Docker before it (a crash, an exit, an OOM kill of its main process), or after its health
  check failed (the swarm kills it and starts another). Deploys, restarts Director asked for and
  drains stop containers through Docker first and do not count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from orchestrator.metrics.cgroups import Limits, Usage
from orchestrator.swarm.containers import Task

ZERO = Usage(0, 0, 0, 0, 0, 0, 0, 0, 0)
# Container names remembered between their events and the pass that counts them.
MAX_MARKED = 20_000


@dataclass(frozen=True, slots=True)
class Reading:
    task: Task
    usage: Usage | None  # None: its cgroup was gone when read
    limits: Limits | None


@dataclass
class SiteWindow:
    """One site's tasks on this node over a window (the node sample's entry)."""

    service: str
    tasks: int = 0  # containers running at the window's end
    cpu_usec: int = 0
    throttled_usec: int = 0
    cpu_limit: float | None = None
    memory_bytes: int = 0
    memory_limit_bytes: int | None = None
    oom_kills: int = 0
    restarts: int = 0
    pids: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0


@dataclass
class Events:
    """What Docker's event stream said since the last pass, per container name."""

    asked: dict[str, None] = field(default_factory=dict)  # stop or kill requested
    failing: dict[str, None] = field(default_factory=dict)  # health check failing
    started: dict[str, None] = field(default_factory=dict)
    ended: dict[str, None] = field(default_factory=dict)
    ooms: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (service, `oom` events)
    restarts: Counter[str] = field(default_factory=Counter)  # per service (site_0042)
    relist: bool = True  # something started or went: list the containers again

    def on(self, action: str, name: str, service: str) -> None:
        if action == "kill":
            _mark(self.asked, name)
        elif action == "health_status: unhealthy":
            _mark(self.failing, name)
        elif action == "health_status: healthy":
            self.failing.pop(name, None)
        elif action == "oom":
            if name in self.ooms or len(self.ooms) < MAX_MARKED:
                self.ooms[name] = (service, self.oom_events(name) + 1)
        elif action == "start":
            _mark(self.started, name)
            self.relist = True
        elif action == "die":
            asked, failing = name in self.asked, name in self.failing
            self.asked.pop(name, None)
            self.failing.pop(name, None)
            _mark(self.ended, name)
            unasked = not asked or failing or self.oom_events(name) > 0
            if unasked and (service in self.restarts or len(self.restarts) < MAX_MARKED):
                self.restarts[service] += 1
            self.relist = True
        elif action == "destroy":
            self.asked.pop(name, None)
            self.failing.pop(name, None)
            self.started.pop(name, None)

    def oom_events(self, name: str) -> int:
        return self.ooms.get(name, ("", 0))[1]


def _mark(names: dict[str, None], name: str) -> None:
    names[name] = None
    while len(names) > MAX_MARKED:
        del names[next(iter(names))]


@dataclass(frozen=True, slots=True)
class _Carried:
    task: Task
    usage: Usage
    oom_kills: int  # the larger of its cgroup's count and its `oom` events


class Ledger:
    """Each container's counters at the last pass, carried to the next."""

    def __init__(self) -> None:
        self._carried: dict[str, _Carried] = {}  # container id -> at the last pass
        self._last_pass: float | None = None

    @property
    def last_pass(self) -> float | None:
        return self._last_pass

    def close(self, now: float, readings: list[Reading], events: Events) -> list[SiteWindow] | None:
        """The window since the last pass, per site (None at the first pass: a baseline only).
        Consumes `events`' counts and forgets containers that went."""
        previous = self._last_pass
        sites: dict[str, SiteWindow] = {}
        carried: dict[str, _Carried] = {}
        for reading in readings:
            task, usage = reading.task, reading.usage
            if usage is None:
                continue  # gone between the listing and the read: handled as gone below
            oom_total = max(usage.oom_kills, events.oom_events(task.name))
            before = self._carried.get(task.container_id)
            if before is not None:
                base, oom_base = before.usage, before.oom_kills
            elif previous is not None and (task.name in events.started or task.created >= previous):
                base, oom_base = ZERO, 0  # started within the window: all of it is the window's
            else:
                base, oom_base = usage, oom_total  # running before we looked: a baseline only
            carried[task.container_id] = _Carried(task, usage, oom_total)
            site = sites.setdefault(task.service, SiteWindow(task.service))
            _add(site, usage, base)
            site.oom_kills += max(0, oom_total - oom_base)
            site.tasks += 1
            site.memory_bytes += usage.memory_bytes
            site.pids += usage.pids
            if reading.limits is not None:  # every task of a site has the same limits
                site.cpu_limit = reading.limits.cpus
                site.memory_limit_bytes = reading.limits.memory_bytes
        for container_id, gone in self._carried.items():
            if container_id in carried:
                continue
            final = max(gone.oom_kills, events.oom_events(gone.task.name))
            if final > gone.oom_kills:
                site = sites.setdefault(gone.task.service, SiteWindow(gone.task.service))
                site.oom_kills += final - gone.oom_kills
            events.ooms.pop(gone.task.name, None)
        read = {c.task.name for c in carried.values()}
        for name, (service, count) in list(events.ooms.items()):
            if name in events.ended and name not in read:
                # Started and ended between two passes, never read: its events are all there is.
                sites.setdefault(service, SiteWindow(service)).oom_kills += count
                del events.ooms[name]
        for service, restarts in events.restarts.items():
            if service in sites:
                sites[service].restarts += restarts
            elif previous is not None:
                sites[service] = SiteWindow(service, restarts=restarts)
        events.restarts.clear()
        events.started.clear()
        events.ended.clear()
        self._carried = carried
        self._last_pass = now
        return None if previous is None else list(sites.values())


def _add(site: SiteWindow, usage: Usage, base: Usage) -> None:
    site.cpu_usec += _delta(usage.cpu_usec, base.cpu_usec)
    site.throttled_usec += _delta(usage.throttled_usec, base.throttled_usec)
    site.io_read_bytes += _delta(usage.io_read_bytes, base.io_read_bytes)
    site.io_write_bytes += _delta(usage.io_write_bytes, base.io_write_bytes)
    site.net_rx_bytes += _delta(usage.net_rx_bytes, base.net_rx_bytes)
    site.net_tx_bytes += _delta(usage.net_tx_bytes, base.net_tx_bytes)


def _delta(now: int, before: int) -> int:
    """A counter's growth; one that went down was started again (all of it is new)."""
    return now - before if now >= before else now
