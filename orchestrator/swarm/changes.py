"""One reader of Docker's event stream for the whole process.

It wakes handlers waiting for a service to change (instead of each polling on its own) and feeds
listeners such as the health monitor. The stream is read in a thread (the SDK blocks); after a
lost connection (Docker restarting) it reconnects with backoff and resumes from the last event's
time, so nothing is skipped, and wakes every waiter, since anything may have changed meanwhile.

On a swarm of several nodes the stream is not enough: a manager's stream carries the swarm's own
events (services, nodes) for the whole cluster, but container events only for its own engine, so a
task dying on a worker says nothing here. While the swarm has more than one node, a survey thread
counts the tasks meant to run of this deployment's services (one listing of them: the serving
sites' tasks, whatever the number of sites; not the other deployments' on the swarm, each of which
surveys its own) every `survey_seconds`, and at once after any node event (a node down, drained,
back), and delivers a `task` change for each service whose counts moved. A single-node swarm makes
no survey call at all: its stream is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests.exceptions

from orchestrator.labels import DEPLOYMENT, SWARM_SERVICE_ID, SWARM_SERVICE_NAME
from orchestrator.logging_setup import fields
from orchestrator.swarm.mapping import lost_running

log = logging.getLogger("orchestrator.watcher")
# Only what can change what a service serves, asked of Docker itself: its health probes are execs,
# and shipping their exec_create/exec_start/exec_die events here would cost the daemon and us
# three events per probe for nothing. ("health_status" matches its ": healthy" and ": unhealthy".)
FILTERS = {
    "type": ["service", "container", "node"],
    "event": ["create", "update", "remove", "start", "die", "kill", "oom", "destroy", "health_status"],
}


HEALTHY = "health_status: healthy"


@dataclass(frozen=True)
class DockerChange:
    type: str  # "service", "container", or "task" (the survey saw a service's task counts move)
    action: str  # e.g. "update", "die", "health_status: unhealthy"
    service_id: str
    time_ns: int
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def service_name(self) -> str:
        return self.attributes.get("name" if self.type == "service" else SWARM_SERVICE_NAME, "")


Counts = dict[str, tuple[str, int, int]]  # service id -> (name, running tasks, desired tasks)


def task_counts(tasks: list[dict[str, Any]], names: dict[str, str], down: frozenset[str] = frozenset()) -> Counts:
    """Pure: per service, of the tasks meant to run (`desired-state=running`), how many run and
    how many there are; a task on a node that is down runs no more, whatever it last said (see
    `mapping.lost_running`). A service without such tasks (not serving) is not counted."""
    running: Counter[str] = Counter()
    desired: Counter[str] = Counter()
    for task in tasks:
        service_id = task.get("ServiceID", "")
        desired[service_id] += 1
        if task["Status"]["State"] == "running" and task.get("NodeID") not in down:
            running[service_id] += 1
    return {service_id: (names.get(service_id, ""), running[service_id], n) for service_id, n in desired.items()}


def lost_tasks(api: docker.APIClient, down: frozenset[str], filters: dict[str, Any] | None = None) -> Counter[str]:
    """Running tasks of nodes that are down, per service (none asked for while every node is up)."""
    if not down:
        return Counter()
    try:
        return lost_running(api.tasks(filters={**(filters or {}), "node": sorted(down)}))
    except docker.errors.NotFound:
        return Counter()  # a node removed since it was seen down: its tasks went with it


def moved(before: Counts | None, now: Counts, time_ns: int) -> list[DockerChange]:
    """Pure: a change for every service whose counts differ from the last survey's, a service
    missing from either counting as none of none: one whose tasks meant to run all went (a task of
    a lost node is restarted after the restart delay: for that while the service has none) or
    came back moves like any other. `before` None: the first survey, which only learns."""
    if before is None:
        return []
    nothing = ("", 0, 0)
    return [
        DockerChange("task", "survey", service_id, time_ns, {SWARM_SERVICE_NAME: name})
        for service_id in sorted(before.keys() | now.keys())
        if (was := before.get(service_id, nothing))[1:] != (is_ := now.get(service_id, nothing))[1:]
        for name in [is_[0] or was[0]]
    ]


Listener = Callable[[DockerChange | None], None]  # None: the stream was lost; resynchronise


class DockerChanges:
    def __init__(
        self, base_url: str, timeout: float, survey_seconds: float = 2.0, deployment: str | None = None
    ) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._survey_seconds = survey_seconds
        self._surveyed = {"label": [f"{DEPLOYMENT}={deployment}"]} if deployment else {}
        self._survey_now = threading.Event()  # a node event: look at once
        # Nodes the swarm says are down (as of the last node event): their tasks' states are stale.
        self.down_nodes: frozenset[str] = frozenset()
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._stopped = threading.Event()
        self.connected = threading.Event()

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._read, name="docker-events", daemon=True)
        self._thread.start()
        if self._survey_seconds > 0:
            threading.Thread(target=self._survey, name="docker-tasks", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self._survey_now.set()
        with contextlib.suppress(Exception):
            if self._stream is not None:
                self._stream.close()

    async def changed(self, service_id: str, timeout: float) -> bool:
        """Wait until something happens to the service (True) or `timeout` passes (False)."""
        woken = asyncio.Event()
        self._waiters[service_id].add(woken)
        try:
            async with asyncio.timeout(timeout):
                await woken.wait()
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._waiters[service_id]
            waiting.discard(woken)
            if not waiting:
                del self._waiters[service_id]

    # --- the reader thread ----------------------------------------------------------------------

    def _read(self) -> None:
        since: float | None = None
        pause = 0.5
        while not self._stopped.is_set():
            try:
                api = docker.APIClient(base_url=self._base_url, version="auto", timeout=self._timeout)
                self._stream = api.events(decode=True, since=since, filters=FILTERS)
                if since is not None:
                    self._deliver(None)  # events may have been missed while we were away
                self.connected.set()
                pause = 0.5
                for raw in self._stream:
                    if raw.get("Type") == "node":
                        self._survey_now.set()  # a node went down, came back or was drained
                        continue
                    event = _parse(raw)
                    if event is not None:
                        since = event.time_ns / 1e9
                        self._deliver(event)
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                if self._stopped.is_set():
                    return
                log.warning("docker event stream lost; reconnecting", extra=fields(error=str(exc), retry_in=pause))
            finally:
                self.connected.clear()
            if since is None:
                since = time.time()
            self._stopped.wait(pause)
            pause = min(pause * 2, 5.0)

    def _survey(self) -> None:
        api: docker.APIClient | None = None
        nodes = 0
        counts: Counts | None = None
        names: dict[str, str] = {}  # service id -> name, of the services with tasks meant to run
        while not self._stopped.is_set():
            nudged = self._survey_now.wait(self._survey_seconds)
            self._survey_now.clear()
            if self._stopped.is_set():
                return
            try:
                if api is None:
                    api = docker.APIClient(base_url=self._base_url, version="auto", timeout=self._timeout)
                if nudged or not nodes:
                    listed = api.nodes()  # node events are rare: listed again only after one
                    nodes = len(listed)
                    self.down_nodes = frozenset(n["ID"] for n in listed if n.get("Status", {}).get("State") == "down")
                if nodes < 2:
                    counts = None
                    continue
                tasks = api.tasks(filters={"desired-state": "running", **self._surveyed})
                if unnamed := {t.get("ServiceID", "") for t in tasks} - names.keys():
                    ids = {"id": sorted(unnamed)}
                    names.update((s["ID"], s["Spec"]["Name"]) for s in api.services(filters={**self._surveyed, **ids}))
                now = task_counts(tasks, names, self.down_nodes)
                names = {service_id: names[service_id] for service_id in now if service_id in names}
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                log.warning("docker task survey failed", extra=fields(error=str(exc)))
                with contextlib.suppress(Exception):
                    if api is not None:
                        api.close()
                api, nodes = None, 0
                continue
            for change in moved(counts, now, time.time_ns()):
                self._deliver(change)
            counts = now

    def _deliver(self, event: DockerChange | None) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._dispatch, event)

    def _dispatch(self, event: DockerChange | None) -> None:
        woken = self._waiters.values() if event is None else [self._waiters.get(event.service_id, set())]
        for waiters in woken:
            for waiter in waiters:
                waiter.set()
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("docker event listener failed")


def _parse(raw: dict[str, Any]) -> DockerChange | None:
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    kind = raw.get("Type", "")
    service_id = actor.get("ID", "") if kind == "service" else attributes.get(SWARM_SERVICE_ID, "")
    if not service_id:
        return None  # a container that is not a swarm task
    if raw.get("Action", "").startswith("exec_"):
        return None  # every health probe is an exec: no change of state
    return DockerChange(kind, raw.get("Action", ""), service_id, int(raw.get("timeNano", 0)), dict(attributes))
