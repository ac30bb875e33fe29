"""The Docker adapter: site services, their convergence, and delete tombstones.

The docker SDK is synchronous, so every call runs in a worker thread. SDK exceptions become
our error types here and nowhere else: connection errors and 5xx are transient, "update out of
sequence" and 409 are conflicts (reload and retry), other 4xx are permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker import types

from orchestrator import spec as specs
from orchestrator.errors import (
    ConvergeTimeout,
    DockerConflict,
    DockerRejected,
    DockerUnavailable,
    ServiceFailed,
    TransientError,
)
from orchestrator.ports import Deployed, label_version
from orchestrator.spec import ServiceSpec

T = TypeVar("T")

_FAILED = {"failed", "rejected"}
_ROLLED_BACK = {"rollback_started", "rollback_paused", "rollback_completed", "paused"}
# Failed tasks after an apply before we call the service broken instead of waiting longer.
FAILURES_BEFORE_GIVING_UP = 2
TOMBSTONE_PREFIX = "orchestrator-tombstone-"
TOMBSTONE = "com.director.tombstone"


class Swarm:
    def __init__(self, base_url: str, timeout: float, poll_interval: float = 0.5) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._poll = poll_interval
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()

    # --- services -------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(lambda api: api.ping())

    async def get(self, name: str) -> Deployed | None:
        def inspect(api: docker.APIClient) -> Deployed | None:
            try:
                return _deployed(api.inspect_service(name))
            except docker.errors.NotFound:
                return None

        return await self._run(inspect)

    async def managed(self) -> list[Deployed]:
        def list_(api: docker.APIClient) -> list[Deployed]:
            found = api.services(filters={"label": f"{specs.MANAGED_BY}={specs.MANAGER}"})
            return [_deployed(s) for s in found]

        return await self._run(list_)

    async def create(self, spec: ServiceSpec) -> Deployed:
        def create(api: docker.APIClient) -> Deployed:
            created = api.create_service(name=spec.name, **_service_args(spec))
            return _deployed(api.inspect_service(created["ID"]))

        return await self._run(create)

    async def update(self, current: Deployed, spec: ServiceSpec) -> Deployed:
        def update(api: docker.APIClient) -> Deployed:
            try:
                api.update_service(current.id, current.index, name=spec.name, **_service_args(spec))
                return _deployed(api.inspect_service(current.id))
            except docker.errors.NotFound as exc:
                # Removed between our read and this write: reload and decide again.
                raise DockerConflict(f"{spec.name} vanished during the update") from exc

        return await self._run(update)

    async def remove(self, service: Deployed) -> None:
        def remove(api: docker.APIClient) -> None:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_service(service.id)

        await self._run(remove)

    async def wait_converged(self, service: Deployed, replicas: int, since: float, timeout: float) -> None:
        """Return once `replicas` tasks of the current spec run; raise when the service is broken."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self._run(lambda api: _rollout(api, service.id, since))
            if state.problem:
                raise ServiceFailed(f"{service.name} did not start: {state.problem}")
            if state.settled and state.running == replicas:
                return
            if time.monotonic() > deadline:
                detail = f"; last task error: {state.last_error}" if state.last_error else ""
                raise ConvergeTimeout(
                    f"{service.name}: {state.running}/{replicas} tasks running after {timeout:.0f}s{detail}"
                )
            await asyncio.sleep(self._poll)

    async def wait_gone(self, service: Deployed, timeout: float) -> None:
        """Wait until no container of a removed service runs any more (its mounts are released)."""
        deadline = time.monotonic() + timeout
        label = f"com.docker.swarm.service.id={service.id}"
        while time.monotonic() < deadline:
            if not await self._run(lambda api: api.containers(filters={"label": label})):
                return
            await asyncio.sleep(self._poll)
        raise TransientError(f"tasks of {service.name} still running {timeout:.0f}s after removal")

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
            name = f"{TOMBSTONE_PREFIX}{specs.service_name(site_id)}-v{version}"
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
        return await asyncio.to_thread(self._call, call)

    def _call(self, call: Callable[[docker.APIClient], T]) -> T:
        try:
            return call(self._api())
        except docker.errors.APIError as exc:
            raise _map_api_error(exc) from exc
        except (docker.errors.InvalidArgument, docker.errors.InvalidVersion) as exc:
            raise DockerRejected(f"the docker client refused the request: {exc}") from exc
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as exc:
            with self._lock:
                self._client = None  # reconnect (and renegotiate the API version) next time
            raise DockerUnavailable(f"docker is unreachable: {exc}") from exc

    def _api(self) -> docker.APIClient:
        with self._lock:
            if self._client is None:
                self._client = docker.APIClient(base_url=self._base_url, version="auto", timeout=self._timeout)
            return self._client


def _map_api_error(exc: docker.errors.APIError) -> Exception:
    status = exc.status_code or 500
    text = str(exc.explanation or exc)
    if "out of sequence" in text or status == 409:
        return DockerConflict(f"the service changed concurrently: {text}")
    if status >= 500:
        return TransientError(f"docker error {status}: {text}", code="docker_error")
    return DockerRejected(f"docker refused the request ({status}): {text}")


def _tombstones(api: docker.APIClient, site_id: int) -> list[tuple[int, str]]:
    """(version, config id) of every tombstone of the site."""
    wanted = [f"{specs.MANAGED_BY}={specs.MANAGER}", f"{specs.SITE_ID}={site_id}", f"{TOMBSTONE}=true"]
    return [(label_version(c["Spec"].get("Labels")), c["ID"]) for c in api.configs(filters={"label": wanted})]


def _ignore_missing(remove: Callable[[str], Any], ident: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        remove(ident)


def _deployed(raw: dict[str, Any]) -> Deployed:
    spec = raw["Spec"]
    return Deployed(
        id=raw["ID"],
        name=spec["Name"],
        index=raw["Version"]["Index"],
        labels=dict(spec.get("Labels") or {}),
        replicas=spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0),
    )


def _service_args(spec: ServiceSpec) -> dict[str, Any]:
    mounts = [
        types.Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
        if m.type == "bind"
        else types.Mount(target=m.target, source=None, type="tmpfs")
        for m in spec.mounts
    ]
    container = types.ContainerSpec(
        image=spec.image,
        command=list(spec.command) if spec.command else None,
        env=dict(spec.env) or None,
        workdir=spec.workdir,
        mounts=mounts,
        read_only=spec.read_only,
        init=spec.init,
        cap_drop=list(spec.cap_drop),
        cap_add=list(spec.cap_add),
        stop_grace_period=spec.stop_grace_ns,
    )
    task = types.TaskTemplate(
        container_spec=container,
        resources=types.Resources(cpu_limit=spec.nano_cpus, mem_limit=spec.memory_bytes),
        restart_policy=types.RestartPolicy(condition="any", delay=spec.restart_delay_ns),
        log_driver=types.DriverConfig("json-file", options=dict(spec.log_options)),
        networks=[{"Target": spec.network}],
        placement=types.Placement(constraints=list(spec.constraints)) if spec.constraints else None,
    )
    # Delays and monitor are nanoseconds on the wire (Director 4 sent delay=5 and got 5 ns).
    update = types.UpdateConfig(
        parallelism=1,
        delay=spec.update_delay_ns,
        failure_action="rollback",
        monitor=spec.update_monitor_ns,
        order="start-first",
    )
    rollback = types.RollbackConfig(parallelism=1, delay=spec.update_delay_ns, monitor=spec.update_monitor_ns)
    return {
        "task_template": task,
        "labels": dict(spec.labels),
        "mode": types.ServiceMode("replicated", replicas=spec.replicas),
        "update_config": update,
        "rollback_config": rollback,
        # No IPVS here, and Traefik routes to task IPs anyway: DNS round-robin needs no VIP.
        "endpoint_spec": types.EndpointSpec(mode="dnsrr"),
    }


@dataclass(frozen=True)
class _Rollout:
    running: int
    settled: bool
    problem: str | None
    last_error: str | None


def _rollout(api: docker.APIClient, service_id: str, since: float) -> _Rollout:
    service = api.inspect_service(service_id)
    update = service.get("UpdateStatus") or {}
    # A rollback from an earlier apply stays in UpdateStatus; only one that began after ours counts.
    if update.get("State") in _ROLLED_BACK and _timestamp(update.get("StartedAt", "")) >= since - 1:
        return _Rollout(0, False, f"update rolled back: {update.get('Message', '')}", None)
    # Only tasks of the spec now in force count: during a start-first update the old task still
    # runs (no false success), and an old crash-looping task is not the new spec failing.
    template = service["Spec"]["TaskTemplate"]
    tasks = [t for t in api.tasks(filters={"service": service_id}) if _same_template(t["Spec"], template)]
    running = sum(1 for t in tasks if t["DesiredState"] == "running" and t["Status"]["State"] == "running")
    failures = [t for t in tasks if t["Status"]["State"] in _FAILED and _timestamp(t.get("CreatedAt", "")) >= since]
    failures.sort(key=lambda t: t.get("CreatedAt", ""))
    last_error = failures[-1]["Status"].get("Err") if failures else None
    problem = None
    if len(failures) >= FAILURES_BEFORE_GIVING_UP and running == 0:
        problem = last_error or failures[-1]["Status"]["State"]
    settled = update.get("State") in (None, "completed")
    return _Rollout(running, settled, problem, last_error)


# Fields the Engine fills in on one side only (the service's template or the task's copy).
_FILLED_IN = ("Runtime", "ForceUpdate")


def _same_template(task_spec: dict[str, Any], template: dict[str, Any]) -> bool:
    def strip(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k not in _FILLED_IN}

    return strip(task_spec) == strip(template)


def _timestamp(value: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds; Python parses microseconds."""
    if not value:
        return 0.0
    head, _, frac = value.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(head).replace(tzinfo=UTC)
    return moment.timestamp() + (float(f"0.{frac}") if frac else 0.0)
