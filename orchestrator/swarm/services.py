"""The Docker adapter for site services: read, create, update, restart and remove them, and follow
a rollout. The fleet as a whole (a survey, putting back a hand edit) is `swarm.fleet`'s, the nodes
`swarm.nodes`', tombstones `swarm.tombstones`'.

The docker SDK is synchronous: every call runs on `swarm.client.DockerClient`'s bounded pool, which
also maps Docker's failures to our error types (the only place that does). What is remembered
between Docker's change events (services as read, the domain claim index, verified routes) is
`swarm.cache.SwarmCache`'s, with its one rule for forgetting. Rollouts are followed by waking on
Docker's change events (see `swarm.changes`), with a slow poll as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

import docker
import docker.errors

from orchestrator.errors import ConvergeTimeout, DockerConflict, OrchestratorError, TransientError
from orchestrator.labels import MANAGED_BY, MANAGER, RESTARTED_BY, STABLE_GATE, SWARM_TASK_ID
from orchestrator.logging_setup import mask
from orchestrator.sites import rollout as rollouts
from orchestrator.sites.protocols import Rollout
from orchestrator.sites.rollout import Broken, Ready
from orchestrator.sites.service import Service, ServiceSpec
from orchestrator.swarm.cache import SwarmCache
from orchestrator.swarm.changes import HEALTHY, DockerChange, DockerChanges, lost_tasks, task_counts
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.fleet import ManagedServices, managed_services, network_names
from orchestrator.swarm.mapping import from_docker, service_of, to_docker
from orchestrator.swarm.nodes import Nodes
from orchestrator.swarm.tombstones import Tombstones
from orchestrator_contract.env import OPEN_ENV_KEYS

T = TypeVar("T")

# Env keys the orchestrator sets (not the site's), whose values are no secret.
OWN_ENV_KEYS = OPEN_ENV_KEYS | {"NGINX_CONF"}
# Between Docker events, look anyway this often (an event may be missed, or not exist: a task
# reaching "running" after its container turned healthy has none of its own).
POLL_SECONDS = 1.0
RECHECK_SECONDS = 0.2
SOON_SECONDS = 1.0  # how long after an event the rollout is looked at every RECHECK_SECONDS
# Tasks whose container turned healthy lately, remembered for rollouts that wait out a window.
HEALTHY_REMEMBERED = 4096


class Swarm:
    def __init__(
        self,
        docker_client: DockerClient,
        *,
        changes: DockerChanges | None = None,
        network: str = "director-sites",
        port: int = 80,
    ) -> None:
        self._docker = docker_client
        self._changes = changes
        self._network = network
        self._port = port
        self.cache = SwarmCache(changes.connected if changes is not None else None)
        self.tombstones = Tombstones(docker_client)
        # What operators' commands and the drift report ask of the swarm as a whole.
        self.fleet = ManagedServices(docker_client, self.cache)
        self.nodes = Nodes(docker_client)
        self._claims_built: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # Task id -> when its container first turned healthy (monotonic, as the event arrived).
        self._healthy_at: OrderedDict[str, float] = OrderedDict()
        if changes is not None:
            changes.listen(self._on_change)

    def close(self) -> None:
        self._docker.close()

    # --- services -------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(lambda api: api.ping())

    async def get(self, name: str) -> Service | None:
        """The service with its status: one call, or none while Docker's events say that nothing
        happened to it (no update, no task started, died or changed health) since the last."""
        if (remembered := self.cache.service(name)) is not None:
            return remembered

        down = self._down_nodes()

        def find(api: docker.APIClient) -> Service | None:
            # The name filter matches prefixes; the status listing says what runs, in one call
            # (and one more while a node is down: what it last said of its tasks is stale).
            found = [s for s in api.services(filters={"name": name}, status=True) if s["Spec"]["Name"] == name]
            if not found:
                return None
            lost = lost_tasks(api, down, {"service": found[0]["ID"]})
            return service_of(found[0], lost=lost[found[0]["ID"]])

        since = self.cache.seen(name)
        service = await self._run(find)
        if service is not None:
            self.cache.remember_service(service, since)
        return service

    async def answering_tasks(self, service: Service) -> int:
        """The service's tasks that answer now: running (a health-checked task runs only once
        healthy), meant to run, on a node that is up. Docker's `RunningTasks` counts more: a task
        draining after its replacement started, and what a lost node last said of its tasks."""
        down = self._down_nodes()

        def count(api: docker.APIClient) -> int:
            tasks = api.tasks(filters={"service": service.id, "desired-state": "running"})
            counted = task_counts(tasks, {}, down)  # the survey's count of one service
            return counted[service.id][1] if service.id in counted else 0

        return await self._run(count)

    async def spec_of(self, name: str) -> tuple[Service, ServiceSpec] | None:
        """The service and its live spec (mapped back from Docker's), or None."""

        def read(api: docker.APIClient) -> tuple[Service, ServiceSpec] | None:
            found = [s for s in api.services(filters={"name": name}) if s["Spec"]["Name"] == name]
            if not found:
                return None
            return service_of(found[0]), from_docker(found[0]["Spec"], network_names(api))

        return await self._run(read)

    async def managed(self) -> list[Service]:
        down = self._down_nodes()

        def read(api: docker.APIClient) -> list[Service]:
            lost = lost_tasks(api, down)
            return [service_of(s, lost=lost[s["ID"]]) for s in managed_services(api)]

        return await self._run(read)

    def _down_nodes(self) -> frozenset[str]:
        return self._changes.down_nodes if self._changes is not None else frozenset()

    async def claims(self, label_keys: Sequence[str]) -> dict[str, frozenset[str]]:
        """From memory: Docker's label filters scan every service, so a lookup would grow with the
        number of sites. The index is rebuilt from the services' labels whenever the event stream
        may have missed something, and updated by each service change and each of our writes."""
        if not (self.cache.live and self.cache.claims_current):
            if self._claims_built is None or self._claims_built.done():
                self._claims_built = asyncio.create_task(self._rebuild_claims())
            await asyncio.shield(self._claims_built)
        return self.cache.claims.holders(label_keys)

    async def _rebuild_claims(self) -> None:
        was_live = self.cache.live
        services = await self.managed()
        self.cache.claims.clear()
        for service in services:
            self.cache.claims.replace(service.name, service.labels)
        # Only an unbroken event stream keeps it current from here on.
        self.cache.claims_current = was_live and self.cache.live

    def _on_change(self, change: DockerChange | None) -> None:
        self.cache.on_change(change)
        if change is not None and change.action == HEALTHY and (task_id := change.attributes.get(SWARM_TASK_ID)):
            self._healthy_at.setdefault(task_id, time.monotonic())
            if len(self._healthy_at) > HEALTHY_REMEMBERED:
                self._healthy_at.popitem(last=False)
        if change is not None and change.type == "service":
            task = asyncio.create_task(self._refresh_claims(change.service_id, change.service_name))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _refresh_claims(self, service_id: str, name: str) -> None:
        since = self.cache.seen(name)

        def labels(api: docker.APIClient) -> dict[str, str] | None:
            try:
                return dict(api.inspect_service(service_id)["Spec"].get("Labels") or {})
            except docker.errors.NotFound:
                return None

        try:
            found = await self._run(labels)
        except OrchestratorError:
            self.cache.claims_current = False  # could not look: rebuild at the next check
            return
        if self.cache.seen(name) != since:
            return  # a later change's read is on its way
        if found is None:
            self.cache.claims.remove(name)
        elif found.get(MANAGED_BY) == MANAGER:
            self.cache.claims.replace(name, found)

    async def create(self, spec: ServiceSpec) -> Service:
        def create(api: docker.APIClient) -> Service:
            created = api.create_service(name=spec.name, **to_docker(spec))
            return service_of(api.inspect_service(created["ID"]))

        self.cache.forget(spec.name)
        service = await self._run(create)
        self.cache.claims.replace(spec.name, spec.labels)  # before its event: the next check must see it
        return service

    async def update(self, current: Service, spec: ServiceSpec) -> Service:
        def update(api: docker.APIClient) -> Service:
            try:
                api.update_service(current.id, current.index, name=spec.name, **to_docker(spec))
                return service_of(api.inspect_service(current.id))
            except docker.errors.NotFound as exc:
                # Removed between our read and this write: reload and decide again.
                raise DockerConflict(f"{spec.name} vanished during the update") from exc

        self.cache.forget(spec.name)
        service = await self._run(update)
        self.cache.claims.replace(spec.name, spec.labels)
        return service

    async def restart(self, current: Service, marker: str, gated: bool = True) -> Service:
        def restart(api: docker.APIClient) -> Service:
            try:
                raw = api.inspect_service(current.id)
                template = dict(raw["Spec"]["TaskTemplate"])
                template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
                gate = "1" if gated else "0"
                labels = {**raw["Spec"].get("Labels", {}), RESTARTED_BY: marker, STABLE_GATE: gate}
                api.update_service(
                    current.id, raw["Version"]["Index"], task_template=template, labels=labels, fetch_current_spec=True
                )
                return service_of(api.inspect_service(current.id))
            except docker.errors.NotFound as exc:
                raise DockerConflict(f"{current.name} vanished during the restart") from exc

        self.cache.forget(current.name)
        return await self._run(restart)

    async def remove(self, service: Service) -> None:
        def remove(api: docker.APIClient) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_service(service.id)

        self.cache.forget(service.name)
        await self._run(remove)
        self.cache.claims.remove(service.name)

    async def converge(self, service: Service, rollout: Rollout) -> Ready | Broken:
        deadline = time.monotonic() + rollout.timeout
        first_running: dict[str, float] = {}  # task id -> when first seen running (monotonic)
        soon_until = 0.0
        while True:
            assessment = await self._run(lambda api: self._assess(api, service.id, rollout, first_running))
            if not isinstance(assessment, rollouts.Waiting):
                return assessment
            now = time.monotonic()
            if now > deadline:
                raise ConvergeTimeout(
                    f"{service.name}: not answering after {rollout.timeout:.0f}s: {assessment.detail}"
                )
            # Soon after an event, look again often: a task's own state follows its container's
            # (a task turning running once healthy has no event of its own).
            wait = RECHECK_SECONDS if now < soon_until else POLL_SECONDS
            if assessment.recheck_in is not None:
                wait = min(wait, assessment.recheck_in)
            if await self._wait_for_change(service.id, wait):
                soon_until = time.monotonic() + SOON_SECONDS

    def _assess(
        self, api: docker.APIClient, service_id: str, rollout: Rollout, first_running: dict[str, float]
    ) -> rollouts.Assessment:
        raw = api.inspect_service(service_id)
        tasks = api.tasks(filters={"service": service_id})
        now = time.monotonic()
        for task in tasks:
            if task["Status"]["State"] == "running":
                # A task of a watched rollout turns healthy at its first answer: its window runs
                # from that event, however late its running state is seen here.
                first_running.setdefault(task["ID"], min(now, self._healthy_at.get(task["ID"], now)))
        return rollouts.assess_rollout(
            raw,
            tasks,
            since=rollout.since,
            replicas=rollout.replicas,
            network=self._network,
            port=self._port,
            runs_site_script=rollout.runs_site_script,
            watch_seconds=rollout.watch_seconds,
            answering_for={task_id: now - seen for task_id, seen in first_running.items()},
        )

    async def last_logs(self, task_id: str, lines: int) -> str:
        """Through the swarm's task logs, so a task on any node is read (its engine sends them)."""

        def logs(api: docker.APIClient) -> str:
            try:
                env = api.inspect_task(task_id)["Spec"].get("ContainerSpec", {}).get("Env") or []
                response = api._get(
                    api._url("/tasks/{0}/logs", task_id), params={"stdout": 1, "stderr": 1, "tail": lines}
                )
                api._raise_for_status(response)
                raw = api._get_result_tty(False, response, False)
            except docker.errors.APIError:
                return ""  # gone, or its node cannot be asked (down): the message goes without
            # The site's env values may be secrets; ours (PORT=80, HOME=/site) are not.
            secrets = [value for key, _, value in (v.partition("=") for v in env) if key not in OWN_ENV_KEYS]
            return mask(bytes(raw).decode(errors="replace"), secrets)

        return await self._run(logs)

    async def wait_gone(self, service: Service, timeout: float) -> None:
        """Wait until no task of a removed service holds a container on any node (its mounts are
        released). The swarm's task list, not this engine's containers: tasks run on workers too."""
        deadline = time.monotonic() + timeout

        def holding(api: docker.APIClient) -> list[str]:
            # By name prefix: a service filter would have to resolve the removed service and fail.
            tasks = api.tasks(filters={"name": f"{service.name}."})
            down = {n["ID"] for n in api.nodes() if n.get("Status", {}).get("State") == "down"}
            return rollouts.holding_containers(tasks, service.id, down)

        while time.monotonic() < deadline:
            if not await self._run(holding):
                return
            await self._wait_for_change(service.id, POLL_SECONDS)
        raise TransientError(f"tasks of {service.name} still running {timeout:.0f}s after removal")

    async def wait_replaced(self, service: Service, timeout: float) -> None:
        """Wait until a live service holds no more containers than its replicas: the tasks its
        last rollout replaced have stopped (their drain over), so nothing runs the old spec."""
        deadline = time.monotonic() + timeout

        def holding(api: docker.APIClient) -> list[str]:
            tasks = api.tasks(filters={"service": service.id})
            down = {n["ID"] for n in api.nodes() if n.get("Status", {}).get("State") == "down"}
            return rollouts.holding_containers(tasks, service.id, down)

        while time.monotonic() < deadline:
            if len(await self._run(holding)) <= service.replicas:
                return
            await self._wait_for_change(service.id, POLL_SECONDS)
        raise TransientError(f"replaced tasks of {service.name} still running after {timeout:.0f}s")

    async def _wait_for_change(self, service_id: str, timeout: float) -> bool:
        if self._changes is None or not self._changes.connected.is_set():
            await asyncio.sleep(min(timeout, 0.5))
            return False
        return await self._changes.changed(service_id, timeout)

    # --- tombstones (see `swarm.tombstones`) -----------------------------------------------------

    async def tombstone(self, site_id: int) -> int | None:
        return await self.tombstones.get(site_id)

    async def set_tombstone(self, site_id: int, version: int, keep_seconds: float) -> None:
        await self.tombstones.set(site_id, version, keep_seconds)

    async def clear_tombstone(self, site_id: int) -> None:
        await self.tombstones.clear(site_id)

    # --- plumbing -----------------------------------------------------------------------------

    async def _run(self, call: Callable[[docker.APIClient], T]) -> T:
        return await self._docker.run(call)
