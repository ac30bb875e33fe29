"""What the active replica tidies on its own, every `housekeeping_seconds`: expired tombstones, and
site databases retired longer than their retention (a final dump into the trash, then dropped)."""

from __future__ import annotations

import asyncio
import logging
import time

from orchestrator.config import Settings
from orchestrator.databases.dumps import write_dump
from orchestrator.databases.engines import Engine
from orchestrator.databases.servers import Databases
from orchestrator.errors import OrchestratorError
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.logging_setup import fields
from orchestrator.swarm.tombstones import Tombstones
from orchestrator_contract.sites import service_name

log = logging.getLogger("orchestrator.housekeeping")
DAY = 86400.0


async def keep_house(tombstones: Tombstones, settings: Settings, active: asyncio.Event) -> None:
    while True:
        if active.is_set():
            try:
                gone = await tombstones.expire(settings.tombstone_days * DAY)
            except OrchestratorError as exc:
                log.warning("could not expire tombstones", extra=fields(error=exc.message))
            except Exception:  # keep tidying next time: a fault here must not stop the replica
                log.exception("expiring tombstones failed")
            else:
                if gone:
                    log.info("expired tombstones", extra=fields(count=gone))
        await asyncio.sleep(settings.housekeeping_seconds)


async def drop_retired(databases: Databases, sitedirs: SiteDirs, settings: Settings, active: asyncio.Event) -> None:
    while True:
        if active.is_set():
            try:
                await drop_retired_once(databases, sitedirs, settings)
            except OrchestratorError as exc:
                log.warning("could not drop retired databases", extra=fields(error=exc.message))
            except Exception:  # a full disk under the trash, a bug: logged, and tried again next time
                log.exception("dropping retired databases failed")
        await asyncio.sleep(settings.housekeeping_seconds)


async def drop_retired_once(databases: Databases, sitedirs: SiteDirs, settings: Settings) -> int:
    """Every database of this deployment retired longer than its retention: dumped into the trash,
    then dropped (a failed dump drops nothing). How many were dropped."""
    dropped = 0
    now = time.time()
    for holding in await databases.holdings():
        for held in holding.held:
            if held.deployment != settings.deployment or held.retired_at is None:
                continue
            if now - held.retired_at < settings.database_retention_seconds:
                continue
            engine = databases.engine(holding.server.name)
            await _dump_and_drop(engine, held.site_id, sitedirs, settings)
            dropped += 1
    return dropped


async def _dump_and_drop(engine: Engine, site_id: int, sitedirs: SiteDirs, settings: Settings) -> None:
    command = engine.dump_command(site_id)
    suffix = "dump" if command.format == "pg_custom" else "sql"
    path = await asyncio.to_thread(sitedirs.trash_path, service_name(site_id), f"database.{suffix}")
    size = await write_dump(
        command, path, chunk_bytes=settings.files_chunk_bytes, max_bytes=settings.database_max_dump_bytes
    )
    await engine.drop(site_id)
    log.info(
        "retired database dropped; its final dump is in the trash",
        extra=fields(site_id=site_id, server=engine.server.name, dump=str(path), bytes=size),
    )
