"""`orchestrator status` and `orchestrator reconcile`: the fleet as it is, and putting back what
was changed by hand. Also the periodic drift report of the running service."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from orchestrator.config import Settings
from orchestrator.contract.sites import Drift, DriftReport
from orchestrator.errors import DockerConflict, OrchestratorError
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.logs import fields
from orchestrator.ops.drift import Fleet, Inventory, ServiceState, assess, restorable
from orchestrator.ops.health import classify
from orchestrator.swarm.services import Swarm

log = logging.getLogger("orchestrator.status")


async def survey(swarm: Swarm, sitedirs: SiteDirs, settings: Settings) -> Fleet:
    (services, tombstones), (dirs, trash) = await asyncio.gather(swarm.inventory(), sitedirs.inventory())
    return assess(Inventory(services, tombstones, dirs, trash), settings.trash_max_age_days)


def health_of(state: ServiceState) -> str:
    if state.desired == 0:
        return "not serving"
    return classify(state.running, state.desired, 0).status


def as_json(fleet: Fleet, site: int | None = None) -> str:
    sites = [
        {
            "site_id": s.site_id,
            "service": s.name,
            "version": s.version,
            "running": s.running,
            "desired": s.desired,
            "health": health_of(s),
            "domains": list(s.domains),
            "last_error": s.last_error,
            "drift": [d.model_dump(mode="json") for d in fleet.drift_of(s.name)],
        }
        for s in fleet.services
        if site is None or s.site_id == site
    ]
    other = [d.model_dump(mode="json") for d in fleet.drift if d.kind in ("unmanaged_dir", "old_trash")]
    other = [d for d in other if site is None or d["site_id"] == site]
    return json.dumps({"sites": sites, "other_drift": other}, indent=2)


def as_table(fleet: Fleet, site: int | None = None) -> str:
    rows = [("SITE", "SERVICE", "VERSION", "TASKS", "HEALTH", "DOMAINS", "DRIFT", "LAST ERROR")]
    for s in sorted(fleet.services, key=lambda s: s.name):
        if site is not None and s.site_id != site:
            continue
        drift = ",".join(d.kind for d in fleet.drift_of(s.name)) or "-"
        rows.append(
            (
                str(s.site_id or "-"),
                s.name,
                str(s.version),
                f"{s.running}/{s.desired}",
                health_of(s),
                ",".join(s.domains) or "-",
                drift,
                (s.last_error or "-")[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for d in fleet.drift:
        if d.kind in ("unmanaged_dir", "old_trash") and (site is None or d.site_id == site):
            lines.append(f"{d.kind}: {d.subject}: {d.detail}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Step:
    drift: Drift
    action: Literal["restore", "remove", "report"]
    note: str  # what reconcile does (or would do), for the operator
    done: bool = False


def plan(fleet: Fleet) -> list[Step]:
    """What reconcile does: put back a hand-edited service whose applied spec Docker still holds,
    remove a deleted site's service. Files are never touched; the rest is only reported."""
    states = {s.name: s for s in fleet.services}
    steps = []
    for drift in fleet.drift:
        state = states.get(drift.subject)
        if drift.kind == "edited" and state is not None and restorable(state):
            steps.append(Step(drift, "restore", f"restore {drift.subject} to version {state.version} as applied"))
        elif drift.kind == "edited":
            note = f"cannot restore {drift.subject}: have Director send the site again"
            steps.append(Step(drift, "report", note))
        elif drift.kind == "tombstoned":
            steps.append(Step(drift, "remove", f"remove {drift.subject}: its site was deleted"))
        else:
            note = f"leave {drift.subject} alone (files are never deleted automatically)"
            steps.append(Step(drift, "report", note))
    return steps


async def reconcile(swarm: Swarm, fleet: Fleet, *, dry_run: bool) -> list[Step]:
    states = {s.name: s for s in fleet.services}
    done = []
    for step in plan(fleet):
        if dry_run or step.action == "report":
            done.append(step)
            continue
        index = states[step.drift.subject].index
        try:
            if step.action == "restore":
                acted = await swarm.restore(step.drift.subject, index)
            else:
                acted = await swarm.remove_if_unchanged(step.drift.subject, index)
        except DockerConflict:
            acted = False
        if acted:
            done.append(replace(step, done=True))
        else:
            note = f"{step.drift.subject} changed since it was surveyed (a deploy?): left alone; run again"
            done.append(replace(step, action="report", note=note))
    return done


async def run_status(settings: Settings, *, as_json_output: bool, site: int | None) -> str:
    swarm = _swarm(settings)
    try:
        fleet = await survey(swarm, SiteDirs(settings.sites_root, settings.trash_dir_name), settings)
    finally:
        swarm.close()
    return as_json(fleet, site) if as_json_output else as_table(fleet, site)


async def run_reconcile(settings: Settings, *, dry_run: bool) -> list[Step]:
    swarm = _swarm(settings)
    try:
        fleet = await survey(swarm, SiteDirs(settings.sites_root, settings.trash_dir_name), settings)
        return await reconcile(swarm, fleet, dry_run=dry_run)
    finally:
        swarm.close()


async def report_drift(
    swarm: Swarm,
    sitedirs: SiteDirs,
    settings: Settings,
    publish: Callable[[DriftReport], Awaitable[bool]],
    active: asyncio.Event,
) -> None:
    """The running service's periodic report; only the active replica speaks."""
    while True:
        await asyncio.sleep(settings.drift_report_seconds)
        if not active.is_set():
            continue
        try:
            fleet = await survey(swarm, sitedirs, settings)
        except OrchestratorError as exc:
            log.warning("could not survey the fleet for drift", extra=fields(error=exc.message))
            continue
        except Exception:  # keep reporting next time, whatever the sites root holds
            log.exception("drift survey failed")
            continue
        if fleet.drift:
            await publish(DriftReport(drift=fleet.drift))
            log.info("drift reported", extra=fields(count=len(fleet.drift)))


def _swarm(settings: Settings) -> Swarm:
    return Swarm(
        settings.docker_url, settings.docker_timeout_seconds, concurrency=4, network=settings.network,
        port=settings.site_port,
    )  # fmt: skip
