"""`orchestrator reconcile`: put back what was changed by hand, never touching files.

`plan` (pure) says what each drift calls for; `reconcile` does it, acting only on a service still
as surveyed (its spec and previous spec: `swarm.mapping.as_surveyed`), so a deploy in between is
never undone.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, replace
from typing import Literal

from orchestrator.commands.output import DRIFT, OK, print_json
from orchestrator.commands.wiring import cli_swarm
from orchestrator.config import Settings
from orchestrator.databases.servers import Databases
from orchestrator.errors import DockerConflict
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.monitor.drift import Fleet, restorable
from orchestrator.monitor.survey import survey
from orchestrator.sites.protocols import DatabasesPort
from orchestrator.sites.service import Service
from orchestrator.swarm.services import Swarm
from orchestrator_contract.results import Drift


@dataclass(frozen=True)
class ReconcileStep:
    drift: Drift
    action: Literal["restore", "remove", "provision", "report"]
    note: str  # what reconcile does (or would do), for the operator
    done: bool = False


def plan(fleet: Fleet) -> list[ReconcileStep]:
    """What reconcile does: put back a hand-edited service whose applied spec Docker still holds,
    remove a deleted site's service, make a site's missing database again. Files and databases are
    never deleted or locked; the rest is only reported."""
    services = {s.name: s for s in fleet.services}
    steps = []
    for drift in fleet.drift:
        service = services.get(drift.subject)
        if drift.kind == "edited" and service is not None and restorable(service):
            note = f"restore {drift.subject} to version {service.site_version} as applied"
            steps.append(ReconcileStep(drift, "restore", note))
        elif drift.kind == "edited":
            note = f"cannot restore {drift.subject}: have Director send the site again"
            steps.append(ReconcileStep(drift, "report", note))
        elif drift.kind == "tombstoned":
            steps.append(ReconcileStep(drift, "remove", f"remove {drift.subject}: its site was deleted"))
        elif drift.kind == "missing_database" and service is not None and service.database is not None:
            grant = service.database
            note = f"make {drift.subject}'s {grant.kind.value} database {grant.name} again on {grant.server}, empty"
            steps.append(ReconcileStep(drift, "provision", note))
        elif drift.kind == "orphan_database":
            note = f"leave {drift.subject} alone (databases are never dropped by reconcile)"
            steps.append(ReconcileStep(drift, "report", note))
        else:
            note = f"leave {drift.subject} alone (files are never deleted automatically)"
            steps.append(ReconcileStep(drift, "report", note))
    return steps


async def reconcile(swarm: Swarm, databases: DatabasesPort, fleet: Fleet, *, dry_run: bool) -> list[ReconcileStep]:
    services = {s.name: s for s in fleet.services}
    done = []
    for step in plan(fleet):
        if dry_run or step.action == "report":
            done.append(step)
            continue
        surveyed = services[step.drift.subject]
        try:
            if step.action == "restore":
                acted = await swarm.fleet.restore(surveyed)
            elif step.action == "provision":
                acted = await _provision(swarm, databases, surveyed)
            else:
                acted = await swarm.fleet.remove_if_unchanged(surveyed)
        except DockerConflict:
            acted = False
        if acted:
            done.append(replace(step, done=True))
        else:
            note = f"{step.drift.subject} changed since it was surveyed (a deploy?): left alone; run again"
            done.append(replace(step, action="report", note=note))
    return done


async def _provision(swarm: Swarm, databases: DatabasesPort, surveyed: Service) -> bool:
    """The service's database made again with the login and password it holds, as long as it
    still holds the grant it was surveyed with (a password reset in between is left alone)."""
    now = await swarm.get(surveyed.name)
    grant = surveyed.database
    if now is None or grant is None or now.database != grant:
        return False
    await databases.provision(grant, fresh=False)
    return True


async def run_reconcile(settings: Settings, *, dry_run: bool) -> list[ReconcileStep]:
    swarm, databases = cli_swarm(settings), Databases.of(settings)
    try:
        fleet = await survey(swarm, SiteDirs.of(settings), settings, databases)
        return await reconcile(swarm, databases, fleet, dry_run=dry_run)
    finally:
        swarm.close()
        await databases.close()


def as_json(steps: list[ReconcileStep]) -> list[dict[str, object]]:
    return [
        {"drift": step.drift.model_dump(mode="json"), "action": step.action, "note": step.note, "done": step.done}
        for step in steps
    ]


def main(args: argparse.Namespace, settings: Settings) -> int:
    """A dry run exits DRIFT when it found any (as `git diff --exit-code`)."""
    steps = asyncio.run(run_reconcile(settings, dry_run=args.dry_run))
    if args.output == "json":
        print_json({"dry_run": args.dry_run, "steps": as_json(steps)})
    else:
        for step in steps:
            mark = "done" if step.done else ("would" if args.dry_run and step.action != "report" else "-")
            print(f"[{mark}] {step.drift.kind}: {step.note}")
        print(f"{len(steps)} drifted, {sum(s.done for s in steps)} restored, removed or made again")
    return DRIFT if args.dry_run and steps else OK
