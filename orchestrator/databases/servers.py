"""The configured database servers, an engine each: what the site handlers provision and retire
through (`sites.protocols.DatabasesPort`), and what requests, status, drift and housekeeping ask."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from orchestrator.config import DatabaseServer, Settings
from orchestrator.databases.engines import Engine, Holdings
from orchestrator.databases.mysql import MySQL
from orchestrator.databases.postgres import Postgres
from orchestrator.errors import DatabaseError, OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.sites.databases import Grant

log = logging.getLogger("orchestrator.databases")


def engine_of(server: DatabaseServer, settings: Settings) -> Engine:
    made = Postgres if server.kind == "postgres" else MySQL
    return made(server, settings.database_timeout_seconds, settings.database_connection_limit, settings.deployment)


class Databases:
    def __init__(self, engines: Sequence[Engine]) -> None:
        self._engines = {engine.server.name: engine for engine in engines}

    @classmethod
    def of(cls, settings: Settings) -> Databases:
        return cls([engine_of(server, settings) for server in settings.database_servers])

    @property
    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def engine(self, server: str) -> Engine:
        found = self._engines.get(server)
        if found is None:
            raise DatabaseError(f"database server {server!r} is no longer configured (DATABASE_SERVERS)")
        return found

    async def provision(self, grant: Grant, fresh: bool) -> None:
        started = time.monotonic()
        await self.engine(grant.server).provision(grant.site_id, grant.user, grant.password, fresh)
        log.info(
            "database provisioned",
            extra=fields(site_id=grant.site_id, database=grant.label, ms=round((time.monotonic() - started) * 1000)),
        )

    async def retire(self, grant: Grant) -> None:
        await self.engine(grant.server).retire(grant.site_id, time.time())
        log.info("database retired: kept locked until its retention ends", extra=fields(site_id=grant.site_id))

    async def holdings(self) -> list[Holdings]:
        """Every server's site databases, asked side by side; a server that does not answer says why."""

        async def one(engine: Engine) -> Holdings:
            try:
                return Holdings(engine.server, await engine.held())
            except OrchestratorError as exc:
                return Holdings(engine.server, error=exc.message)

        return list(await asyncio.gather(*(one(engine) for engine in self._engines.values())))

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()
