"""Health after deploy: `site.health` once per change, from Docker's event stream, never per poll.

A task event (died, started, health check failing or passing) or a service event for a site
schedules one look at that service a moment later (so a burst of events is one look); the look
classifies it, and only a status different from the last one published is published. A site is
watched from its deploy (`watch`, as the handler is about to say `site.deployed`) or the first
time a look sees it healthy, whichever comes first (its deploy's own result covers the way
there), and from start-up for every site already serving. A lost event stream means a fresh look
at every watched site once it is back.

Only this deployment's sites (`ORCHESTRATOR_DEPLOYMENT`): Docker's events are the whole swarm's,
and a site of another deployment on it is another Director's to hear about. Its name is looked up
once and then ignored, so every orchestrator on a swarm does not look at every site.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.errors import OrchestratorError
from orchestrator.labels import DEPLOYMENT, SITE_ID
from orchestrator.logging_setup import fields
from orchestrator.sites.protocols import SwarmPort
from orchestrator.sites.service import Service
from orchestrator.swarm.changes import DockerChange
from orchestrator_contract.results import HealthStatus, SiteHealth

log = logging.getLogger("orchestrator.health")

Publish = Callable[[SiteHealth], Awaitable[bool]]
UNHEALTHY = "health_status: unhealthy"
HEALTHY = "health_status: healthy"
# Task events that can change what answers; anything else (exec, attach, ...) cannot.
_TASK_ACTIONS = {"start", "die", "kill", "oom", "destroy", UNHEALTHY, HEALTHY}


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    detail: str


def classify(running: int, desired: int, failing_checks: int) -> Health:
    """Pure: what the swarm's own counts say. Site tasks count as running only once their health
    check passes, so running tasks are answering tasks."""
    answering = f"{running} of {desired} tasks answering"
    if running == 0:
        return Health("down", f"{answering}: nothing serves the site")
    if running < desired or failing_checks:
        failing = f"; health check failing in {failing_checks}" if failing_checks else ""
        return Health("unhealthy", f"{answering}{failing}")
    return Health("healthy", answering)


class HealthMonitor:
    def __init__(
        self,
        swarm: SwarmPort,
        publish: Publish,
        *,
        active: asyncio.Event | None = None,
        deployment: str | None = None,
        settle_seconds: float = 1.0,
        retry_seconds: float = 5.0,
    ) -> None:
        self.swarm = swarm
        self.publish = publish
        self.active = active
        self.deployment = deployment  # None: every site (a swarm of one deployment)
        self.settle_seconds = settle_seconds
        self.retry_seconds = retry_seconds
        self._published: dict[str, HealthStatus] = {}  # name -> last status published (watched sites)
        self._failing: dict[str, set[str]] = {}  # name -> containers whose health check fails
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._foreign: set[str] = set()  # names of other deployments' sites: not looked at again

    async def start(self, services: list[Service]) -> None:
        """Watch every site already serving; report those that are not healthy now. The listing's
        own counts decide, so a start-up over a thousand healthy sites costs no Docker call each;
        only a site the listing shows short of tasks gets a look (which reports it)."""
        for service in services:
            if service.replicas > 0 and service.labels.get(SITE_ID) and self._ours(service):
                self._published[service.name] = "healthy"
                if service.running is None or service.running < service.replicas:
                    self._schedule(service.name, delay=0)

    def _ours(self, service: Service) -> bool:
        return self.deployment is None or service.labels.get(DEPLOYMENT) == self.deployment

    def watch(self, name: str) -> None:
        """The site's deploy saw it answer: watched from now on, even if no look saw it healthy
        yet (Swarm calls a task running a moment after its container turned healthy, with no
        event of its own: a look in that moment saw nothing running, and no event may follow
        until the site exits). One look soon after finds what happened since the deploy saw it."""
        if name not in self._published:
            self._published[name] = "healthy"
            self._schedule(name)

    def stop(self) -> None:
        for task in self._pending.values():
            task.cancel()

    def on_change(self, event: DockerChange | None) -> None:
        if event is None:
            self._failing.clear()  # a restarted Docker forgot its containers: no `die` will come
            self._foreign.clear()  # a name may have changed hands meanwhile
            for name in list(self._published):
                self._schedule(name)
            return
        name = event.service_name
        if not name.startswith("site_"):
            return
        if name in self._foreign:
            if event.type != "service" or event.action != "remove":
                return
            self._foreign.discard(name)  # the name is free for a site of ours again
        if event.type == "container":
            if event.action not in _TASK_ACTIONS:
                return
            failing = self._failing.setdefault(name, set())
            container = event.attributes.get("name", "")  # the task's container
            if event.action == UNHEALTHY:
                failing.add(container)
            else:
                failing.discard(container)
        self._schedule(name)

    def _schedule(self, name: str, delay: float | None = None) -> None:
        if name not in self._pending:
            wait = self.settle_seconds if delay is None else delay
            self._pending[name] = asyncio.create_task(self._look(name, wait))

    async def _look(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self._pending.pop(name, None)  # events from now on schedule another look
        try:
            service = await self.swarm.get(name)
            # The listing's count includes a task draining after its replacement started: a
            # replacement that dies meanwhile would go unseen.
            answering = await self.swarm.answering_tasks(service) if service and service.running else 0
        except OrchestratorError as exc:
            log.warning("could not look at a site's health", extra=fields(service=name, error=exc.message))
            return  # the stream reconnecting brings a fresh look
        if service is not None and not self._ours(service):
            self._foreign.add(name)
        if service is None or service.replicas == 0 or not service.labels.get(SITE_ID) or name in self._foreign:
            self._published.pop(name, None)  # removed, not serving or not ours: not watched
            self._failing.pop(name, None)
            return
        health = classify(answering, service.replicas, len(self._failing.get(name, ())))
        last = self._published.get(name)
        if last is None and health.status != "healthy":
            return  # not yet watched: on its way up, its deploy result tells
        if last is None or (self.active is not None and not self.active.is_set()):
            # First seen healthy: watched from now on. A standby keeps track without speaking.
            self._published[name] = health.status
        elif last != health.status:
            event = SiteHealth(
                site_id=int(service.labels[SITE_ID]),
                status=health.status,
                since=datetime.now(UTC),
                detail=health.detail,
            )
            if not await self.publish(event):
                self._schedule(name, delay=self.retry_seconds)  # said nothing yet: say it once the broker is back
                return
            self._published[name] = health.status
            log.info("site health changed", extra=fields(site_id=event.site_id, status=event.status))
        if health.status != "healthy":
            # Keep looking until it recovers: a task turning running after its container got
            # healthy has no event of its own.
            self._schedule(name, delay=self.retry_seconds)
