"""Pure: our `ServiceSpec` to the Docker Engine's service arguments and back, and Docker's service
listings to our `Service`.

`to_docker` is what the swarm adapter sends; `from_docker` maps a live `Spec` back, so its
fingerprint can be compared with the one recorded at apply (a hand edit shows as a difference).
Times are nanoseconds on the wire.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from docker import types

from orchestrator.labels import DATABASE
from orchestrator.sites import service as specs
from orchestrator.sites.rollout import timestamp
from orchestrator.sites.service import Service, ServiceSpec
from orchestrator_contract.env import DATABASE_ENV_KEYS


def last_error(tasks: list[dict[str, Any]]) -> str | None:
    failed = [t for t in tasks if t.get("Status", {}).get("Err")]
    if not failed:
        return None
    latest = max(failed, key=lambda t: t.get("Status", {}).get("Timestamp", ""))
    return str(latest["Status"]["Err"])


def lost_running(tasks: Iterable[dict[str, Any]]) -> Counter[str]:
    """Per service, the tasks in state `running` among `tasks` (those of nodes that are down).
    Docker's `RunningTasks` counts them: a task's state is what its node last said, and a lost node
    says nothing more (its task stays `running`, desired `shutdown`, while a replacement starts)."""
    return Counter(t.get("ServiceID", "") for t in tasks if t["Status"]["State"] == "running")


def service_of(raw: dict[str, Any], *, lost: int = 0, **survey: Any) -> Service:
    """A service listing (`status=True` fills in the running count) as our `Service`, without the
    `lost` tasks of nodes that are down; `survey`: the survey-only fields."""
    spec = raw["Spec"]
    status = raw.get("ServiceStatus")
    labels = dict(spec.get("Labels") or {})
    return Service(
        id=raw["ID"],
        name=spec["Name"],
        index=raw["Version"]["Index"],
        labels=labels,
        replicas=spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0),
        env=_database_env(spec) if DATABASE in labels else {},
        running=max(0, int(status.get("RunningTasks") or 0) - lost) if status else None,
        update_state=(raw.get("UpdateStatus") or {}).get("State"),
        updated_at=timestamp(raw.get("UpdatedAt", "")),
        **survey,
    )


def _database_env(spec: dict[str, Any]) -> dict[str, str]:
    env = (spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Env")) or []
    pairs = (item.partition("=") for item in env)
    return {key: value for key, _, value in pairs if key in DATABASE_ENV_KEYS}


def as_surveyed(surveyed: Service, raw: dict[str, Any], network_names: Callable[[], Mapping[str, str]]) -> bool:
    """Whether the service `raw` (an inspect) is still what the survey saw. Docker moves a
    service's version index for its own rollout bookkeeping too (the update status of the very hand
    edit that reconcile undoes, going from updating to completed), so a moved index alone is not a
    change: the spec and the previous spec are compared (`network_names` is only called then).
    Any write moves the previous spec to the surveyed live one, so a deploy in between differs."""
    if raw["ID"] != surveyed.id:  # removed and made again under the name since
        return False
    if raw["Version"]["Index"] == surveyed.index:
        return True
    previous = raw.get("PreviousSpec")
    names = network_names()
    return (
        from_docker(raw["Spec"], names) == surveyed.live
        and (from_docker(previous, names) if previous else None) == surveyed.previous
    )


def from_docker(raw: dict[str, Any], network_names: Mapping[str, str]) -> ServiceSpec:
    """The inverse of `to_docker`: the `ServiceSpec` a service's Docker `Spec` says, so its
    fingerprint can be compared with the one recorded at apply (a hand edit shows as a
    difference). Docker stores networks by id; `network_names` maps ids to names."""
    task = raw.get("TaskTemplate", {})
    networks = [network_names.get(n.get("Target", ""), n.get("Target", "")) for n in task.get("Networks") or []]
    container = task.get("ContainerSpec", {})
    limits = task.get("Resources", {}).get("Limits", {})
    health = container.get("Healthcheck")
    test = (health or {}).get("Test") or []
    update = raw.get("UpdateConfig", {})
    restart = task.get("RestartPolicy") or {}
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
        restart_delay_ns=restart.get("Delay", 0),
        restart_max_attempts=restart.get("MaxAttempts", 0),
        restart_window_ns=restart.get("Window", 0),
        stop_grace_ns=container.get("StopGracePeriod", 0),
    )


def to_docker(spec: ServiceSpec) -> dict[str, Any]:
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
        restart_policy=types.RestartPolicy(
            condition="any",
            delay=spec.restart_delay_ns,
            max_attempts=spec.restart_max_attempts,
            window=spec.restart_window_ns,
        ),
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
