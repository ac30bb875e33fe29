"""The fleet as the swarm and the sites root hold it now, with what drifted and what is wrong with
the platform: what `orchestrator status` and `reconcile` show and the drift report sends."""

from __future__ import annotations

import asyncio

from orchestrator.config import Settings
from orchestrator.databases.drift import database_drift
from orchestrator.databases.servers import Databases
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.monitor.drift import Fleet, Inventory, find_drift
from orchestrator.swarm.services import Swarm


async def survey(swarm: Swarm, sitedirs: SiteDirs, settings: Settings, databases: Databases) -> Fleet:
    services, tombstones, (dirs, trash), holdings = await asyncio.gather(
        swarm.fleet.survey(), swarm.tombstones.all(), sitedirs.inventory(), databases.holdings()
    )
    fleet = find_drift(Inventory(services, tombstones, dirs, trash), settings.trash_max_age_days)
    found = database_drift(fleet.services, holdings, settings.deployment)
    fleet.drift.extend(found.drift)
    fleet.warnings.extend(found.warnings)
    fleet.database_bytes.update(found.sizes)
    if missing := sitedirs.missing_mount_options():
        fleet.warnings.append(f"the sites root {settings.sites_root} is not mounted {','.join(missing)}")
    if why := await asyncio.to_thread(sitedirs.quota_problem):
        fleet.warnings.append(f"SITE_DISK_LIMIT is not enforced: {why}")
    fleet.disks.update(await asyncio.to_thread(sitedirs.disk_usage, [s.name for s in fleet.services]))
    return fleet
