"""Draining a node without a failed request.

Swarm's own drain (`docker node update --availability drain`) stops a node's tasks first and
starts their replacements after: every site has one replica, so each would be unreachable for a
start and a stability window. `orchestrator drain NODE`
pauses the node instead (nothing new lands there, nothing stops), moves each site's task with the
start-first rollout every redeploy uses (the new task answers, on another node, before Traefik
drops the old one, which keeps serving through `DRAIN_SECONDS`), and only then drains the node, for
whatever else still runs there.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from dataclasses import asdict, dataclass

from orchestrator.commands.output import FAILED, OK, REFUSED, confirmed, print_json
from orchestrator.commands.wiring import cli_swarm
from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.sites.protocols import Rollout
from orchestrator.sites.rollout import Broken
from orchestrator.sites.service import Service
from orchestrator.swarm.services import Swarm

log = logging.getLogger("orchestrator.nodes")
MOVES_AT_ONCE = 4  # each holds little but a wait; Docker's own limit is the swarm's scheduler


@dataclass(frozen=True)
class Moved:
    site: str
    error: str | None = None  # None: its task now answers on another node


async def drain(swarm: Swarm, node: str, settings: Settings) -> list[Moved]:
    await swarm.nodes.set_availability(node, "pause")
    slots = asyncio.Semaphore(MOVES_AT_ONCE)

    async def move(service: Service) -> Moved:
        async with slots:
            since = time.time()
            try:
                restarted = await swarm.restart(service, f"drain {node}")
                rollout = Rollout(since, restarted.replicas, False, settings.converge_timeout_seconds)
                outcome = await swarm.converge(restarted, rollout)
            except OrchestratorError as exc:
                return Moved(service.name, exc.message)
            if isinstance(outcome, Broken):
                return Moved(service.name, outcome.message)
            log.info("site moved off a node", extra=fields(service=service.name, node=node))
            return Moved(service.name)

    moved = await asyncio.gather(*(move(s) for s in await swarm.nodes.sites_on(node)))
    # A site that could not move still goes with Swarm's drain: the node is being emptied anyway.
    await swarm.nodes.set_availability(node, "drain")
    return list(moved)


async def sites_on(settings: Settings, node: str) -> list[str]:
    swarm = cli_swarm(settings)
    try:
        return sorted(service.name for service in await swarm.nodes.sites_on(node))
    finally:
        swarm.close()


async def run_drain(settings: Settings, node: str) -> list[Moved]:
    swarm = cli_swarm(settings)
    try:
        return await drain(swarm, node, settings)
    finally:
        swarm.close()


def main(args: argparse.Namespace, settings: Settings) -> int:
    """`--dry-run` names the sites that would move and changes nothing; otherwise an operator
    confirms (or passes `--yes`). Exits FAILED when a site could not move first."""
    node = args.node
    if args.dry_run or not args.yes:
        sites = asyncio.run(sites_on(settings, node))
        if args.dry_run:
            if args.output == "json":
                print_json({"node": node, "dry_run": True, "sites": sites})
            else:
                print(
                    "\n".join([*(f"{site}: would move" for site in sites), f"{len(sites)} sites would move off {node}"])
                )
            return OK
        question = f"Move {len(sites)} sites off {node} and drain it? Type 'drain' to confirm: "
        if not confirmed(question, "drain"):
            return REFUSED
    moved = asyncio.run(run_drain(settings, node))
    if args.output == "json":
        print_json({"node": node, "dry_run": False, "sites": [asdict(m) for m in moved]})
    else:
        for one in moved:
            print(f"{one.site}: {'moved' if one.error is None else 'left to the drain: ' + one.error}")
        print(f"{sum(m.error is None for m in moved)} of {len(moved)} sites moved; {node} drained")
    return OK if all(m.error is None for m in moved) else FAILED
