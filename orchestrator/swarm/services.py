"""The Docker adapter: site services, their rollouts, and delete tombstones.

The docker SDK is synchronous, so every call runs on a small thread pool whose size bounds the
Docker calls in flight (the only thing an event holds a worker for). SDK exceptions become our
error types here and nowhere else: connection errors and 5xx are transient, "update out of
sequence" and 409 are conflicts (reload and retry), other 4xx are permanent. Rollouts are
followed by waking on Docker's events (see `watcher`), with a slow poll as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import docker
import docker.errors
from docker import types

from orchestrator.contract.env import RESERVED_ENV_KEYS
from orchestrator.errors import (
    ConvergeTimeout,
    DockerConflict,
    OrchestratorError,
    TransientError,
)
from orchestrator.logs import mask
from orchestrator.ops.drift import ServiceState
from orchestrator.sites import rollout as rollouts
from orchestrator.sites import spec as specs
from orchestrator.sites.domains import ClaimIndex
from orchestrator.sites.protocols import Deployed, Rollout, label_version
from orchestrator.sites.rollout import Broken, Ready
from orchestrator.sites.spec import ServiceSpec
from orchestrator.swarm.changes import DockerEvent, DockerEvents
from orchestrator.swarm.client import DockerClient

T = TypeVar("T")

# Env keys the orchestrator sets (not the site's), whose values are no secret.
OWN_ENV_KEYS = RESERVED_ENV_KEYS | {"NGINX_CONF"}
TOMBSTONE_PREFIX = "orchestrator-tombstone-"
TOMBSTONE = "com.director.tombstone"
# Between Docker events, look anyway this often (an event may be missed, or not exist: a task
# reaching "running" after its container turned healthy has none of its own).
POLL_SECONDS = 1.0
RECHECK_SECONDS = 0.2


class Swarm:
    def __init__(
        self,
        base_url: str,
        timeout: float,
        *,
        concurrency: int = 8,
        events: DockerEvents | None = None,
        network: str = "director-sites",
        port: int = 80,
    ) -> None:
        self._docker = DockerClient(base_url, timeout, concurrency)
        self._events = events
        self._network = network
        self._port = port
        # Who claims which domains, kept current by Docker's service events (see `claims`).
        self._claims = ClaimIndex()
        self._claims_current = False
        self._claims_built: asyncio.Task[None] | None = None
        self._generations: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Services as last listed, while no event says they changed (see `get`).
        self._seen: dict[str, Deployed] = {}
        self._reading: dict[str, bool] = {}  # name -> changed while being read
        if events is not None:
            events.listen(self._on_event)

    def close(self) -> None:
        self._docker.close()

    # --- services -------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(lambda api: api.ping())

    async def get(self, name: str) -> Deployed | None:
        """The service with its status: one call, or none while Docker's events say that nothing
        happened to it (no update, no task started, died or changed health) since the last."""
        if (seen := self._seen.get(name)) is not None and self._events is not None and self._events.connected.is_set():
            return seen

        def find(api: docker.APIClient) -> Deployed | None:
            # The name filter matches prefixes; the status listing says what runs, in one call.
            found = [s for s in api.services(filters={"name": name}, status=True) if s["Spec"]["Name"] == name]
            return _deployed(found[0]) if found else None

        stream_up = self._events is not None and self._events.connected.is_set()
        self._reading[name] = False
        try:
            deployed = await self._run(find)
        finally:
            changed = self._reading.pop(name, True)
        # Only a settled service is remembered: a task turning running has no event of its own.
        if deployed is not None and stream_up and not changed and deployed.settled:
            self._seen[name] = deployed
        return deployed

    async def managed(self) -> list[Deployed]:
        def list_(api: docker.APIClient) -> list[Deployed]:
            found = api.services(filters={"label": f"{specs.MANAGED_BY}={specs.MANAGER}"}, status=True)
            return [_deployed(s) for s in found]

        return await self._run(list_)

    async def claims(self, label_keys: Sequence[str]) -> dict[str, frozenset[str]]:
        """From memory: Docker's label filters scan every service, so a lookup would grow with the
        number of sites. The index is rebuilt from the services' labels whenever the event stream
        may have missed something, and updated by each service event and each of our writes."""
        if self._events is None or not self._events.connected.is_set():
            self._claims_current = False
        if not self._claims_current:
            if self._claims_built is None or self._claims_built.done():
                self._claims_built = asyncio.create_task(self._rebuild_claims())
            await asyncio.shield(self._claims_built)
        return self._claims.holders(label_keys)

    def _forget(self, name: str) -> None:
        self._seen.pop(name, None)
        if name in self._reading:
            self._reading[name] = True

    async def _rebuild_claims(self) -> None:
        managed = await self.managed()
        self._claims.clear()
        for service in managed:
            self._claims.replace(service.name, service.labels)
        # Only an unbroken event stream keeps it current from here on.
        self._claims_current = self._events is not None and self._events.connected.is_set()

    def _on_event(self, event: DockerEvent | None) -> None:
        if event is None:
            self._claims_current = False  # the stream was lost: events may be missing
            self._seen.clear()
            return
        self._forget(event.service_name)
        if event.type == "service":
            name = event.service_name
            self._generations[name] = generation = self._generations.get(name, 0) + 1
            task = asyncio.create_task(self._refresh_claims(event.service_id, name, generation))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _refresh_claims(self, service_id: str, name: str, generation: int) -> None:
        def labels(api: docker.APIClient) -> dict[str, str] | None:
            try:
                return dict(api.inspect_service(service_id)["Spec"].get("Labels") or {})
            except docker.errors.NotFound:
                return None

        try:
            found = await self._run(labels)
        except OrchestratorError:
            self._claims_current = False  # could not look: rebuild at the next check
            return
        if self._generations.get(name) != generation:
            return  # a later event's read is on its way
        del self._generations[name]
        if found is None:
            self._claims.remove(name)
        elif found.get(specs.MANAGED_BY) == specs.MANAGER:
            self._claims.replace(name, found)

    async def create(self, spec: ServiceSpec) -> Deployed:
        def create(api: docker.APIClient) -> Deployed:
            created = api.create_service(name=spec.name, **_service_args(spec))
            return _deployed(api.inspect_service(created["ID"]))

        self._forget(spec.name)
        deployed = await self._run(create)
        self._claims.replace(spec.name, spec.labels)  # before its event: the next check must see it
        return deployed

    async def update(self, current: Deployed, spec: ServiceSpec) -> Deployed:
        def update(api: docker.APIClient) -> Deployed:
            try:
                api.update_service(current.id, current.index, name=spec.name, **_service_args(spec))
                return _deployed(api.inspect_service(current.id))
            except docker.errors.NotFound as exc:
                # Removed between our read and this write: reload and decide again.
                raise DockerConflict(f"{spec.name} vanished during the update") from exc

        self._forget(spec.name)
        deployed = await self._run(update)
        self._claims.replace(spec.name, spec.labels)
        return deployed

    async def restart(self, current: Deployed, marker: str) -> Deployed:
        def restart(api: docker.APIClient) -> Deployed:
            try:
                raw = api.inspect_service(current.id)
                template = dict(raw["Spec"]["TaskTemplate"])
                template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
                labels = {**raw["Spec"].get("Labels", {}), specs.RESTARTED_BY: marker}
                api.update_service(
                    current.id, raw["Version"]["Index"], task_template=template, labels=labels, fetch_current_spec=True
                )
                return _deployed(api.inspect_service(current.id))
            except docker.errors.NotFound as exc:
                raise DockerConflict(f"{current.name} vanished during the restart") from exc

        self._forget(current.name)
        return await self._run(restart)

    async def remove(self, service: Deployed) -> None:
        def remove(api: docker.APIClient) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_service(service.id)

        self._forget(service.name)
        await self._run(remove)
        self._claims.remove(service.name)

    async def converge(self, service: Deployed, rollout: Rollout) -> Ready | Broken:
        deadline = time.monotonic() + rollout.timeout
        woken = False
        while True:
            assessment = await self._run(lambda api: self._assess(api, service.id, rollout))
            if not isinstance(assessment, rollouts.Waiting):
                return assessment
            if time.monotonic() > deadline:
                raise ConvergeTimeout(
                    f"{service.name}: not answering after {rollout.timeout:.0f}s: {assessment.detail}"
                )
            # Right after an event, look again soon: the task's own state follows its container's.
            woken = await self._wait_for_change(service.id, RECHECK_SECONDS if woken else POLL_SECONDS)

    def _assess(self, api: docker.APIClient, service_id: str, rollout: Rollout) -> rollouts.Assessment:
        raw = api.inspect_service(service_id)
        tasks = api.tasks(filters={"service": service_id})
        return rollouts.assess(
            raw,
            tasks,
            since=rollout.since,
            replicas=rollout.replicas,
            network=self._network,
            port=self._port,
            runs_site_script=rollout.runs_site_script,
        )

    async def last_logs(self, container_id: str, lines: int) -> str:
        def logs(api: docker.APIClient) -> str:
            try:
                env = api.inspect_container(container_id)["Config"].get("Env") or []
                raw = api.logs(container_id, stdout=True, stderr=True, tail=lines)
            except docker.errors.NotFound:
                return ""
            # The site's env values may be secrets; ours (PORT=80, HOME=/site) are not.
            secrets = [value for key, _, value in (v.partition("=") for v in env) if key not in OWN_ENV_KEYS]
            return mask(bytes(raw).decode(errors="replace"), secrets)

        return await self._run(logs)

    async def wait_gone(self, service: Deployed, timeout: float) -> None:
        """Wait until no container of a removed service runs any more (its mounts are released)."""
        deadline = time.monotonic() + timeout
        label = f"com.docker.swarm.service.id={service.id}"
        while time.monotonic() < deadline:
            if not await self._run(lambda api: api.containers(filters={"label": label})):
                return
            await self._wait_for_change(service.id, POLL_SECONDS)
        raise TransientError(f"tasks of {service.name} still running {timeout:.0f}s after removal")

    async def _wait_for_change(self, service_id: str, timeout: float) -> bool:
        if self._events is None or not self._events.connected.is_set():
            await asyncio.sleep(min(timeout, 0.5))
            return False
        return await self._events.changed(service_id, timeout)

    # --- status and drift ---------------------------------------------------------------------

    async def inventory(self) -> tuple[list[ServiceState], dict[int, int]]:
        """Every managed service as it is now (and as it was before its last update), with its
        last task error; and every site's tombstone."""

        def read(api: docker.APIClient) -> tuple[list[ServiceState], dict[int, int]]:
            names = {n["Id"]: n["Name"] for n in api.networks()}
            states = []
            for raw in api.services(filters={"label": f"{specs.MANAGED_BY}={specs.MANAGER}"}, status=True):
                deployed = _deployed(raw)
                site = raw["Spec"].get("Labels", {}).get(specs.SITE_ID, "")
                previous = raw.get("PreviousSpec")
                states.append(
                    ServiceState(
                        name=deployed.name,
                        site_id=int(site) if site.isdigit() else None,
                        version=deployed.site_version,
                        index=deployed.index,
                        running=deployed.running or 0,
                        desired=deployed.replicas,
                        domains=deployed.domains,
                        last_error=_last_error(api.tasks(filters={"service": raw["ID"]})),
                        live=spec_of(raw["Spec"], names),
                        previous=spec_of(previous, names) if previous else None,
                    )
                )
            tombstones: dict[int, int] = {}
            for config in _tombstone_configs(api):
                labels = config["Spec"].get("Labels") or {}
                site_id = int(labels.get(specs.SITE_ID, "0"))
                tombstones[site_id] = max(tombstones.get(site_id, 0), label_version(labels))
            return states, tombstones

        return await self._run(read)

    async def restore(self, name: str, index: int) -> bool:
        """Put back Docker's previous spec of the service (the applied one, before a hand edit),
        only if the service is still as surveyed at `index`; False when it changed since."""

        def restore(api: docker.APIClient) -> bool:
            raw = api.inspect_service(name)
            previous = raw.get("PreviousSpec")
            if raw["Version"]["Index"] != index or not previous:
                return False
            # Docker refuses the write if anything changed in between ("update out of sequence").
            api.update_service(
                raw["ID"],
                index,
                name=previous["Name"],
                task_template=previous["TaskTemplate"],
                labels=previous.get("Labels"),
                mode=previous.get("Mode"),
                update_config=previous.get("UpdateConfig"),
                rollback_config=previous.get("RollbackConfig"),
                endpoint_spec=previous.get("EndpointSpec"),
            )
            return True

        self._forget(name)
        return await self._run(restore)

    async def remove_if_unchanged(self, name: str, index: int) -> bool:
        """Remove the service only if it is still as surveyed at `index` (a site re-created since
        must not go); False when it changed."""

        def remove(api: docker.APIClient) -> bool:
            try:
                if api.inspect_service(name)["Version"]["Index"] != index:
                    return False
                api.remove_service(name)
            except docker.errors.NotFound:
                return True
            return True

        self._forget(name)
        removed = await self._run(remove)
        if removed:
            self._claims.remove(name)
        return removed

    # --- tombstones: a deleted site's last version, kept in the swarm itself -----------------

    async def tombstone(self, site_id: int) -> int | None:
        """The version at which the site was last deleted, if it was."""
        return await self._run(lambda api: max((v for v, _ in _tombstones(api, site_id)), default=None))

    async def set_tombstone(self, site_id: int, version: int) -> None:
        """Record a delete at `version`: the new tombstone is written before older ones go."""

        def write(api: docker.APIClient) -> None:
            existing = _tombstones(api, site_id)
            if any(v >= version for v, _ in existing):
                return
            labels = {specs.MANAGED_BY: specs.MANAGER, specs.SITE_ID: str(site_id), specs.VERSION: str(version),
                      TOMBSTONE: "true"}  # fmt: skip
            name = tombstone_name(site_id, version)
            try:
                api.create_config(name, f"deleted at version {version}\n".encode(), labels=labels)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another writer recorded the same delete
                    raise
            for _, config_id in existing:
                _ignore_missing(api.remove_config, config_id)

        await self._run(write)

    async def clear_tombstone(self, site_id: int) -> None:
        def clear(api: docker.APIClient) -> None:
            for _, config_id in _tombstones(api, site_id):
                _ignore_missing(api.remove_config, config_id)

        await self._run(clear)

    # --- plumbing -----------------------------------------------------------------------------

    async def _run(self, call: Callable[[docker.APIClient], T]) -> T:
        return await self._docker.run(call)


def tombstone_name(site_id: int, version: int) -> str:
    """The config recording a delete. Docker allows 64 characters: the longest site id and the
    largest version the contract accepts fit (59)."""
    return f"{TOMBSTONE_PREFIX}{specs.service_name(site_id)}-v{version}"


def _tombstones(api: docker.APIClient, site_id: int) -> list[tuple[int, str]]:
    """(version, config id) of every tombstone of the site."""
    return [(label_version(c["Spec"].get("Labels")), c["ID"]) for c in _tombstone_configs(api, site_id)]


def _tombstone_configs(api: docker.APIClient, site_id: int | None = None) -> list[dict[str, Any]]:
    """The tombstone configs of one site, or of all."""
    wanted = [f"{specs.MANAGED_BY}={specs.MANAGER}", f"{TOMBSTONE}=true"]
    if site_id is not None:
        wanted.append(f"{specs.SITE_ID}={site_id}")
    configs: list[dict[str, Any]] = api.configs(filters={"label": wanted})
    return configs


def _ignore_missing(remove: Callable[[str], Any], ident: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        remove(ident)


def _last_error(tasks: list[dict[str, Any]]) -> str | None:
    failed = [t for t in tasks if t.get("Status", {}).get("Err")]
    if not failed:
        return None
    latest = max(failed, key=lambda t: t.get("Status", {}).get("Timestamp", ""))
    return str(latest["Status"]["Err"])


def _deployed(raw: dict[str, Any]) -> Deployed:
    spec = raw["Spec"]
    status = raw.get("ServiceStatus")
    return Deployed(
        id=raw["ID"],
        name=spec["Name"],
        index=raw["Version"]["Index"],
        labels=dict(spec.get("Labels") or {}),
        replicas=spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0),
        running=status.get("RunningTasks") if status else None,
        update_state=(raw.get("UpdateStatus") or {}).get("State"),
        updated_at=rollouts.timestamp(raw.get("UpdatedAt", "")),
    )


def spec_of(raw: dict[str, Any], network_names: Mapping[str, str]) -> ServiceSpec:
    """The inverse of `_service_args`: the `ServiceSpec` a service's Docker `Spec` says, so its
    fingerprint can be compared with the one recorded at apply (a hand edit shows as a
    difference). Docker stores networks by id; `network_names` maps ids to names."""
    task = raw.get("TaskTemplate", {})
    networks = [network_names.get(n.get("Target", ""), n.get("Target", "")) for n in task.get("Networks") or []]
    container = task.get("ContainerSpec", {})
    limits = task.get("Resources", {}).get("Limits", {})
    health = container.get("Healthcheck")
    test = (health or {}).get("Test") or []
    update = raw.get("UpdateConfig", {})
    return ServiceSpec(
        name=raw.get("Name", ""),
        image=container.get("Image", ""),
        labels=dict(raw.get("Labels") or {}),
        network=",".join(networks),
        replicas=raw.get("Mode", {}).get("Replicated", {}).get("Replicas", 0),
        nano_cpus=limits.get("NanoCPUs", 0),
        memory_bytes=limits.get("MemoryBytes", 0),
        command=tuple(container["Command"]) if container.get("Command") else None,
        user=container.get("User"),
        env=dict(item.partition("=")[::2] for item in container.get("Env") or []),
        workdir=container.get("Dir"),
        mounts=tuple(
            specs.Mount(
                target=m["Target"],
                source=m.get("Source", "") if m.get("Type") == "bind" else "",
                type="bind" if m.get("Type") == "bind" else "tmpfs",
                read_only=bool(m.get("ReadOnly", False)),
            )
            for m in container.get("Mounts") or []
        ),
        read_only=bool(container.get("ReadOnly", False)),
        init=bool(container.get("Init", False)),
        cap_drop=tuple(container.get("CapabilityDrop") or ()),
        cap_add=tuple(container.get("CapabilityAdd") or ()),
        pids_limit=limits.get("Pids", 0),
        healthcheck=specs.HealthCheck(
            command=test[1] if len(test) > 1 else "",
            interval_ns=health.get("Interval", 0),
            timeout_ns=health.get("Timeout", 0),
            start_period_ns=health.get("StartPeriod", 0),
            retries=health.get("Retries", 0),
        )
        if health
        else None,
        log_options=dict((task.get("LogDriver") or {}).get("Options") or {}),
        constraints=tuple((task.get("Placement") or {}).get("Constraints") or ()),
        update_delay_ns=update.get("Delay", 0),
        update_monitor_ns=update.get("Monitor", 0),
        restart_delay_ns=(task.get("RestartPolicy") or {}).get("Delay", 0),
        stop_grace_ns=container.get("StopGracePeriod", 0),
    )


def _service_args(spec: ServiceSpec) -> dict[str, Any]:
    mounts = [
        types.Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
        if m.type == "bind"
        else types.Mount(target=m.target, source=None, type="tmpfs")
        for m in spec.mounts
    ]
    health = spec.healthcheck
    container = types.ContainerSpec(
        image=spec.image,
        command=list(spec.command) if spec.command else None,
        user=spec.user,
        env=dict(spec.env) or None,
        workdir=spec.workdir,
        mounts=mounts,
        read_only=spec.read_only,
        init=spec.init,
        cap_drop=list(spec.cap_drop),
        cap_add=list(spec.cap_add) or None,
        stop_grace_period=spec.stop_grace_ns,
        healthcheck=types.Healthcheck(
            test=["CMD-SHELL", health.command],
            interval=health.interval_ns,
            timeout=health.timeout_ns,
            start_period=health.start_period_ns,
            retries=health.retries,
        )
        if health
        else None,
    )
    resources = types.Resources(cpu_limit=spec.nano_cpus, mem_limit=spec.memory_bytes)
    if spec.pids_limit:
        resources["Limits"]["Pids"] = spec.pids_limit  # API 1.41; the SDK has no argument for it
    task = types.TaskTemplate(
        container_spec=container,
        resources=resources,
        restart_policy=types.RestartPolicy(condition="any", delay=spec.restart_delay_ns),
        log_driver=types.DriverConfig("json-file", options=dict(spec.log_options)),
        networks=[{"Target": spec.network}],
        placement=types.Placement(constraints=list(spec.constraints)) if spec.constraints else None,
    )
    # Delays and monitor are nanoseconds on the wire (Director 4 sent delay=5 and got 5 ns).
    # Start-first both ways: the task in service stops only once its replacement answers.
    update = types.UpdateConfig(
        parallelism=1,
        delay=spec.update_delay_ns,
        failure_action="rollback",
        monitor=spec.update_monitor_ns,
        order="start-first",
    )
    rollback = types.RollbackConfig(
        parallelism=1, delay=spec.update_delay_ns, monitor=spec.update_monitor_ns, order="start-first"
    )
    return {
        "task_template": task,
        "labels": dict(spec.labels),
        "mode": types.ServiceMode("replicated", replicas=spec.replicas),
        "update_config": update,
        "rollback_config": rollback,
        # No IPVS here, and Traefik routes to task IPs anyway: DNS round-robin needs no VIP.
        "endpoint_spec": types.EndpointSpec(mode="dnsrr"),
    }
