"""Director's database requests (`director.databases`), one carried out: from a typed request to
the reply's body.

A request names a site; its service says which database it has and with which login (the
`com.director.database` label and the env: `sites.databases`), so a site without a service (never
deployed, or deleted) is `site_not_found` and one without a database `no_database`. Passwords go
only into the replies of `database.credentials` and `database.reset_password`, never into a log
line or a result event.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, assert_never

from orchestrator import retry
from orchestrator.bus.outcomes import Requester
from orchestrator.bus.replies import ok_reply
from orchestrator.config import Settings
from orchestrator.databases.dumps import Dumps
from orchestrator.databases.engines import QueryLimits
from orchestrator.databases.servers import Databases
from orchestrator.errors import DatabaseRefused, OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.sites.databases import Grant, new_password, other_login, with_login
from orchestrator.sites.locks import KeyedLocks
from orchestrator.sites.protocols import Rollout
from orchestrator.sites.rollout import Broken, Ready
from orchestrator.sites.service import Service, ServiceSpec
from orchestrator.sites.spec import with_database
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.databases import (
    CredentialsResult,
    DatabaseCredentials,
    DatabaseDump,
    DatabaseQuery,
    DatabaseRequest,
    DatabaseResetPassword,
    DatabaseUsage,
    DatabaseUsageResult,
)
from orchestrator_contract.sites import SiteKind, service_name

log = logging.getLogger("orchestrator.databases")


class SitesPort(Protocol):
    """The swarm as these requests need it (`swarm.services.Swarm`)."""

    async def get(self, name: str) -> Service | None: ...

    async def spec_of(self, name: str) -> tuple[Service, ServiceSpec] | None: ...

    async def update(self, current: Service, spec: ServiceSpec) -> Service: ...

    async def converge(self, service: Service, rollout: Rollout) -> Ready | Broken: ...

    async def wait_replaced(self, service: Service, timeout: float) -> None: ...


class SiteDatabases:
    def __init__(
        self,
        settings: Settings,
        databases: Databases,
        sites: SitesPort,
        dumps: Dumps,
        site_locks: KeyedLocks,
        runs_site_script: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.settings = settings
        self.databases = databases
        self.sites = sites
        self.dumps = dumps
        self.site_locks = site_locks
        self._runs_site_script = runs_site_script

    async def handle(self, request: DatabaseRequest, requester: Requester) -> bytes | None:
        """The reply's body; None when a stream answers instead."""
        match request:
            case DatabaseCredentials():
                return ok_reply(credentials(await self._grant(request.site_id)))
            case DatabaseUsage():
                grant = await self._grant(request.site_id)
                size = await self.databases.engine(grant.server).usage(grant.site_id)
                if size is None:
                    raise _missing(grant)
                return ok_reply(DatabaseUsageResult(kind=grant.kind, name=grant.name, bytes=size))
            case DatabaseQuery():
                if not self.settings.database_query_enabled:
                    raise DatabaseRefused(
                        "the operator turned the console off (DATABASE_QUERY_ENABLED)", code=ErrorCode.QUERY_DISABLED
                    )
                grant = await self._grant(request.site_id)
                settings = self.settings
                limits = QueryLimits(
                    settings.database_query_timeout_seconds,
                    settings.database_query_max_rows,
                    settings.database_query_max_bytes,
                )
                return ok_reply(await self.databases.engine(grant.server).query(grant, request.sql, limits))
            case DatabaseDump():
                grant = await self._grant(request.site_id)
                command = self.databases.engine(grant.server).dump_command(grant.site_id)
                await self.dumps.stream(grant.site_id, command, requester)
                return None
            case DatabaseResetPassword():
                return ok_reply(credentials(await self.reset_password(request.site_id)))
            case _:
                assert_never(request)

    async def reset_password(self, site_id: int) -> Grant:
        """A new password on the site's other login; the service moved to it (start-first and
        health-gated: the task in service keeps its login until its replacement answers); then
        the old login locked and its sessions ended, once no replaced task runs any more (a
        stopping task keeps serving through its drain)."""
        name = service_name(site_id)
        async with self.site_locks.hold({name}, set()):
            made: list[Grant] = []
            try:
                held, moved = await self._move(site_id, name, made)
            except BaseException:
                if made:
                    await self._unmake(made[0])
                raise
            await self.databases.engine(held.server).lock(site_id, held.user)
        log.info("database password reset", extra=fields(site_id=site_id, user=moved.user))
        return moved

    async def _move(self, site_id: int, name: str, made: list[Grant]) -> tuple[Grant, Grant]:
        """The service moved to the other login with a new password (put in `made` as soon as it
        logs in): (the old grant, the new)."""
        async for attempt in retry.on_conflict():
            with attempt:
                found = await self.sites.spec_of(name)
                if found is None:
                    raise _site_not_found(site_id)
                current, live = found
                held = current.database
                if held is None:
                    raise _no_database(site_id)
                if not made:
                    moved = with_login(held, other_login(site_id, held.user), new_password())
                    await self.databases.engine(held.server).enable(site_id, moved.user, moved.password)
                    made.append(moved)
                since = time.time()
                deployed = await self.sites.update(current, with_database(live, made[0]))
        if deployed.replicas:
            runs_script = deployed.kind == SiteKind.DYNAMIC and await self._runs_site_script(name)
            rollout = Rollout(since, deployed.replicas, runs_script, self.settings.converge_timeout_seconds)
            outcome = await self.sites.converge(deployed, rollout)
            if isinstance(outcome, Broken):
                # Swarm rolls back to the old spec, whose login still works.
                raise DatabaseRefused(
                    f"the site did not come up on its new login, so its old one stays: {outcome.message}",
                    code=ErrorCode.SERVICE_FAILED,
                )
            stopping = self.settings.stop_grace_seconds + self.settings.drain_seconds
            await self.sites.wait_replaced(deployed, stopping + self.settings.converge_timeout_seconds)
        assert held is not None
        return held, made[0]

    async def _unmake(self, moved: Grant) -> None:
        """A reset that failed after enabling the other login: that login locked again, unless
        the service uses it after all (best effort: the next reset sets it anew anyway)."""
        with contextlib.suppress(OrchestratorError):
            service = await self.sites.get(service_name(moved.site_id))
            if service is None or service.database is None or service.database.user != moved.user:
                await self.databases.engine(moved.server).lock(moved.site_id, moved.user)

    async def _grant(self, site_id: int) -> Grant:
        service = await self.sites.get(service_name(site_id))
        if service is None:
            raise _site_not_found(site_id)
        if service.database is None:
            raise _no_database(site_id)
        return service.database


def credentials(grant: Grant) -> CredentialsResult:
    return CredentialsResult(
        kind=grant.kind,
        host=grant.host,
        port=grant.port,
        name=grant.name,
        user=grant.user,
        password=grant.password,
        url=grant.url,
    )


def _site_not_found(site_id: int) -> OrchestratorError:
    return DatabaseRefused(
        f"site {site_id} does not exist (never deployed, or deleted: its database is kept locked until its "
        "retention ends)",
        code=ErrorCode.SITE_NOT_FOUND,
    )


def _no_database(site_id: int) -> OrchestratorError:
    return DatabaseRefused(f"site {site_id} has no database", code=ErrorCode.NO_DATABASE)


def _missing(grant: Grant) -> OrchestratorError:
    return DatabaseRefused(
        f"the site's {grant.kind.value} database is missing on server {grant.server} (an operator's reconcile "
        "makes it again)",
        code=ErrorCode.DATABASE_ERROR,
    )
