"""Pure: what a service's tasks say about a rollout. Ready, still on its way, or broken and why.

Swarm counts a task with a health check as running only once healthy, and our probe is healthy
only after the server answered for a stability window (see `sitescripts.HEALTH_PROBE`); so
"running" here means answering, steadily. Only tasks of the spec now in force count: during a
start-first update the old task still serves and is not the new spec succeeding, and an old
crash-looping task is not the new spec failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.sites.scripts import UNSTABLE_EXIT
from orchestrator_contract.codes import ErrorCode

# Failed tasks of a new service before we call it broken rather than unlucky.
FAILURES_BEFORE_GIVING_UP = 2
_FAILED = {"failed", "rejected"}
_ROLLBACK = {"rollback_started", "rollback_paused", "rollback_completed"}
_DONE = {None, "completed"}
# Task states in which a task may have a container (and its mounts) on its node.
_HOLDING = {"assigned", "accepted", "preparing", "ready", "starting", "running"}
_IMAGE_MISSING = ("no such image", "pull access denied", "manifest unknown", "repository does not exist", "not found")
# Fields the Engine fills in on the service's template only.
_SERVICE_ONLY = ("Runtime",)
# A task healthy at its first answer watches its window in the background and ends at a miss at
# once; past the window, half a second more for that end to reach the swarm before it counts.
WATCH_MARGIN_SECONDS = 0.5


@dataclass(frozen=True)
class Waiting:
    detail: str
    recheck_in: float | None = None  # nothing will say when to look again: look in this long


@dataclass(frozen=True)
class Ready:
    """Every task of the current spec answers. `servers`: where Traefik should send requests."""

    servers: tuple[str, ...]


@dataclass(frozen=True)
class Broken:
    code: ErrorCode
    message: str
    rolled_back: bool = False
    # A failed task whose last log lines may say why (read through the swarm: any node's).
    task_id: str | None = None


Assessment = Waiting | Ready | Broken


def assess_rollout(
    service: dict[str, Any],
    tasks: Sequence[dict[str, Any]],
    *,
    since: float,
    replicas: int,
    network: str,
    port: int,
    runs_site_script: bool,
    watch_seconds: float | None = None,
    answering_for: Mapping[str, float] | None = None,
) -> Assessment:
    """Where the rollout applied at `since` (epoch seconds) stands. `watch_seconds`: its tasks
    pass their health check at the first answer and must have been seen running this long
    (`answering_for`: seconds since each running task was first seen running)."""
    template = service["Spec"]["TaskTemplate"]
    update = service.get("UpdateStatus") or {}
    state = update.get("State")
    ours = timestamp(update.get("StartedAt", "")) >= since - 1  # an earlier apply's status is not ours
    current = [t for t in tasks if _same_template(t["Spec"], template)]
    if ours and state in _ROLLBACK:
        # The template is the previous spec again; the failed tasks are those of the spec we sent.
        failures = _failures([t for t in tasks if t not in current], since)
        if state != "rollback_completed":
            return Waiting("the update failed; rolling back to the previous version")
        broken = _classify(failures[-1], runs_site_script) if failures else None
        reason = broken.message if broken else update.get("Message", "the update failed")
        return Broken(
            broken.code if broken else ErrorCode.SERVICE_FAILED,
            f"rolled back, the previous version keeps serving: {reason}",
            rolled_back=True,
            task_id=broken.task_id if broken else None,
        )
    if ours and state == "paused":
        return Broken(ErrorCode.SERVICE_FAILED, f"the update paused: {update.get('Message', '')}")
    running = [t for t in current if t["DesiredState"] == "running" and t["Status"]["State"] == "running"]
    failures = _failures(current, since)
    if failures:
        last = _classify(failures[-1], runs_site_script)
        # A missing image never gets better; anything else may be a bad start, so allow a second.
        if last.code is ErrorCode.IMAGE_NOT_FOUND or (len(failures) >= FAILURES_BEFORE_GIVING_UP and not running):
            return last
    # An earlier apply's rollback is over and done; ours must have completed.
    settled = state in _DONE or (not ours and state == "rollback_completed")
    if settled and len(running) == replicas:
        if watch_seconds is not None:
            window = watch_seconds + WATCH_MARGIN_SECONDS
            left = max((window - (answering_for or {}).get(t["ID"], 0.0) for t in running), default=0.0)
            if left > 0:
                return Waiting(f"{len(running)}/{replicas} tasks answering, within the stability window", left)
        return Ready(tuple(sorted(server for t in running for server in _servers(t, network, port))))
    starting = sum(1 for t in current if t["Status"]["State"] == "starting")
    return Waiting(f"{len(running)}/{replicas} tasks answering, {starting} starting, update {state or 'none'}")


def _failures(tasks: Sequence[dict[str, Any]], since: float) -> list[dict[str, Any]]:
    """Tasks that ended badly since the apply, oldest first. A site's server never exits by itself,
    so a task that completed (exit 0) failed too."""
    ended = [
        t
        for t in tasks
        if (t["Status"]["State"] in _FAILED or t["Status"]["State"] == "complete")
        and timestamp(t.get("CreatedAt", "")) >= since - 1
    ]
    return sorted(ended, key=lambda t: t.get("CreatedAt", ""))


def _classify(task: dict[str, Any], runs_site_script: bool) -> Broken:
    status = task["Status"]
    error = status.get("Err") or ""
    task_id = task.get("ID") or None
    lowered = error.lower()
    if status["State"] == "rejected" and any(marker in lowered for marker in _IMAGE_MISSING):
        image = task["Spec"]["ContainerSpec"].get("Image", "").split("@")[0]
        return Broken(ErrorCode.IMAGE_NOT_FOUND, f"the image {image} does not exist or cannot be pulled: {error}")
    if "unhealthy container" in lowered:
        return Broken(
            ErrorCode.NOT_LISTENING,
            f"nothing answered HTTP on the site's port in time ({error})",
            task_id=task_id,
        )
    exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if exit_code == UNSTABLE_EXIT:
        message = "the server stopped answering within its stability window"
        return Broken(ErrorCode.NOT_LISTENING, message, task_id=task_id)
    if runs_site_script and (status["State"] == "complete" or "non-zero exit" in lowered):
        return Broken(
            ErrorCode.RUN_SCRIPT_FAILED,
            f"run.sh exited with status {exit_code if exit_code is not None else '?'}",
            task_id=task_id,
        )
    return Broken(ErrorCode.SERVICE_FAILED, f"the task failed: {error or status['State']}", task_id=task_id)


def holding_containers(tasks: Sequence[dict[str, Any]], service_id: str, down_nodes: set[str]) -> list[str]:
    """Pure: the tasks of a service that may still have a container on their node. A node
    that is down is not waited for: nothing there answers, and the swarm cleans up when it is back."""
    return [
        t["ID"]
        for t in tasks
        if t.get("ServiceID") == service_id and t["Status"]["State"] in _HOLDING and t.get("NodeID") not in down_nodes
    ]


def _servers(task: dict[str, Any], network: str, port: int) -> list[str]:
    urls = []
    for attachment in task.get("NetworksAttachments") or []:
        if attachment.get("Network", {}).get("Spec", {}).get("Name") == network:
            urls += [f"http://{address.split('/')[0]}:{port}" for address in attachment.get("Addresses") or []]
    return urls


def _same_template(task_spec: dict[str, Any], template: dict[str, Any]) -> bool:
    def strip(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k not in _SERVICE_ONLY}

    return strip(task_spec) == strip(template)


def timestamp(value: str) -> float:
    """Docker's RFC 3339 timestamps carry nanoseconds; Python parses microseconds."""
    if not value:
        return 0.0
    head, _, frac = value.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(head).replace(tzinfo=UTC)
    return moment.timestamp() + (float(f"0.{frac}") if frac else 0.0)
