"""`orchestrator site reset-version ID`: an operator's way out when a site's recorded version is
wrong (e.g. Director sent 2^63-1 by mistake, and every later event is stale): the site's
tombstones are removed and its service's version label set to 0, so Director's next event of any
version applies. Nothing else changes: its tasks keep running."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass

from orchestrator.commands.output import OK, REFUSED, confirmed, print_json
from orchestrator.commands.wiring import cli_swarm
from orchestrator.config import Settings
from orchestrator_contract.sites import service_name


@dataclass(frozen=True)
class Reset:
    site_id: int
    service: str
    version_before: int | None  # the service's recorded version; None: no service
    tombstone_before: int | None  # the version of its delete tombstone; None: none

    def __str__(self) -> str:
        said = []
        if self.version_before is not None:
            said.append(f"{self.service} recorded version {self.version_before}; now 0")
        if self.tombstone_before is not None:
            said.append(f"its delete tombstone (version {self.tombstone_before}) removed")
        return "; ".join(said) or f"site {self.site_id} has neither a service nor a tombstone: nothing to reset"


async def reset_version(settings: Settings, site_id: int) -> Reset:
    swarm = cli_swarm(settings)
    try:
        deleted_at = await swarm.tombstones.get(site_id)
        await swarm.tombstones.clear(site_id)
        before = await swarm.fleet.reset_version(service_name(site_id))
    finally:
        swarm.close()
    return Reset(site_id, service_name(site_id), before, deleted_at)


def main(args: argparse.Namespace, settings: Settings) -> int:
    question = f"Forget the recorded version of site {args.site_id}? Type 'reset' to confirm: "
    if not args.yes and not confirmed(question, "reset"):
        return REFUSED
    done = asyncio.run(reset_version(settings, args.site_id))
    if args.output == "json":
        print_json(asdict(done))
    else:
        print(done)
    return OK
