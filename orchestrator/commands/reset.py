"""`orchestrator site reset-version ID`: an operator's way out when a site's recorded version is
wrong (e.g. Director sent 2^63-1 by mistake, and every later event is stale): the site's
tombstones are removed and its service's version label set to 0, so Director's next event of any
version applies. Nothing else changes: its tasks keep running."""

from __future__ import annotations

from orchestrator.commands.wiring import cli_swarm
from orchestrator.config import Settings
from orchestrator_contract.sites import service_name


async def reset_version(settings: Settings, site_id: int) -> str:
    swarm = cli_swarm(settings)
    try:
        deleted_at = await swarm.tombstones.get(site_id)
        await swarm.tombstones.clear(site_id)
        before = await swarm.reset_version(service_name(site_id))
    finally:
        swarm.close()
    said = []
    if before is not None:
        said.append(f"{service_name(site_id)} recorded version {before}; now 0")
    if deleted_at is not None:
        said.append(f"its delete tombstone (version {deleted_at}) removed")
    return "; ".join(said) or f"site {site_id} has neither a service nor a tombstone: nothing to reset"
