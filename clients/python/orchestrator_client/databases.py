"""A site's database (one its site event asked for: `"database": {"kind": "postgres"}`), as
Director's database page uses it, over `director.databases`:

    login = await client.databases.credentials(7)          # host, port, name, user, password, url
    result = await client.databases.query(7, "SELECT id, body FROM notes")
    with open("site_0007.dump", "wb") as out:
        async for data in client.databases.dump(7): out.write(data)

A refusal raises its typed error: `SiteNotFound`, `NoDatabase`, `QueryFailed`, `QueryTimeout`,
`MultipleStatements`, `QueryDisabled`, `DatabaseUnavailable`, `Busy`, ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from orchestrator_client.requests import Requests
from orchestrator_contract.databases import (
    CredentialsResult,
    DatabaseCredentials,
    DatabaseDump,
    DatabaseQuery,
    DatabaseResetPassword,
    DatabaseUsage,
    DatabaseUsageResult,
    DumpChunk,
    QueryResult,
)

# A reset moves the site's service to its other login (a start-first, health-gated update, then
# the replaced task's drain): as long as a deploy, past the client's usual timeout.
RESET_TIMEOUT = 300.0


class Databases:
    def __init__(self, requests: Requests) -> None:
        self._requests = requests

    async def credentials(self, site_id: int) -> CredentialsResult:
        """The site's database and login, password included (for its owner's eyes only)."""
        return await self._requests.call(DatabaseCredentials(site_id=site_id), CredentialsResult)

    async def reset_password(self, site_id: int, *, timeout: float = RESET_TIMEOUT) -> CredentialsResult:
        """A new password, on the site's other login: the site moves to it without a failed
        request, then the old login is locked and its sessions ended. The new credentials."""
        return await self._requests.call(DatabaseResetPassword(site_id=site_id), CredentialsResult, timeout)

    async def query(self, site_id: int, sql: str) -> QueryResult:
        """One SQL statement as the site's own login, under the operator's statement timeout;
        rows past the operator's bounds are left out (`truncated`)."""
        return await self._requests.call(DatabaseQuery(site_id=site_id, sql=sql), QueryResult)

    async def usage(self, site_id: int) -> DatabaseUsageResult:
        """How many bytes the database holds."""
        return await self._requests.call(DatabaseUsage(site_id=site_id), DatabaseUsageResult)

    async def dump(self, site_id: int) -> AsyncIterator[bytes]:
        """The database in its engine's dump format (PostgreSQL: pg_dump's custom format, for
        pg_restore; MySQL: SQL), chunk by chunk; its sha256 and size are checked at the end
        (`IoError`)."""
        async for data in self._requests.chunks(DatabaseDump(site_id=site_id), DumpChunk, "dump"):
            yield data
