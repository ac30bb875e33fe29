"""What the active replica tidies on its own, every `housekeeping_seconds`: expired tombstones."""

from __future__ import annotations

import asyncio
import logging

from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.swarm.tombstones import Tombstones

log = logging.getLogger("orchestrator.housekeeping")
DAY = 86400.0


async def keep_house(tombstones: Tombstones, settings: Settings, active: asyncio.Event) -> None:
    while True:
        if active.is_set():
            try:
                gone = await tombstones.expire(settings.tombstone_days * DAY)
            except OrchestratorError as exc:
                log.warning("could not expire tombstones", extra=fields(error=exc.message))
            else:
                if gone:
                    log.info("expired tombstones", extra=fields(count=gone))
        await asyncio.sleep(settings.housekeeping_seconds)
