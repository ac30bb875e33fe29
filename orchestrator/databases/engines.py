"""What the orchestrator asks of a database server, as one small protocol both engines
(`databases.postgres`, `databases.mysql`) implement; the unit tests use an in-memory fake.

Every operation is idempotent (a redelivered event or a replica taking over half way repeats it
harmlessly) and names a site by its id; the names on the server are `sites.databases`'s. Errors
are ours, never a driver's: `DatabaseUnavailable` (transient: the server did not answer),
`DatabaseError` (the server refused the admin), `DatabaseRefused` (a request's own fault, e.g. the
console's statement).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from orchestrator.config import DatabaseServer
from orchestrator.errors import DatabaseError, DatabaseRefused
from orchestrator.sites.databases import Grant
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.databases import DatabaseKind, QueryResult

SITE_NAME = re.compile(r"site_([0-9]{4,10})")
LOGIN_NAME = re.compile(r"site_([0-9]{4,10})_[ab]")


def admin_password(server: DatabaseServer) -> str:
    """The server's admin password, read from its file (a Docker secret) at each use: a rotated
    secret needs no restart. An unreadable file is the operator's to fix, not a retry's."""
    try:
        return server.admin_password()
    except OSError as exc:
        raise DatabaseError(
            f"{server.kind} server {server.name}: the admin password file {server.admin_password_file} cannot "
            f"be read: {exc.strerror}"
        ) from None


@dataclass(frozen=True)
class Marker:
    """What a site database's comment says: the deployment whose site it is (`DEPLOYMENT`: two
    deployments sharing a server keep to their own), and since when it is retired, if it is:
    `director:<deployment>` or `director:<deployment>:retired:<epoch seconds>`."""

    deployment: str | None
    retired_at: float | None = None

    def comment(self) -> str:
        retired = "" if self.retired_at is None else f":retired:{int(self.retired_at)}"
        return f"director:{self.deployment}{retired}"

    @classmethod
    def of(cls, comment: str | None) -> Marker:
        if not comment or not comment.startswith("director:"):
            return cls(None)
        deployment, _, retired = comment.removeprefix("director:").partition(":retired:")
        try:
            return cls(deployment or None, float(retired) if retired else None)
        except ValueError:
            return cls(deployment or None)

    def refuse_if_foreign(self, name: str, server: DatabaseServer, deployment: str) -> None:
        if self.deployment is not None and self.deployment != deployment:
            raise DatabaseError(
                f"{server.kind} server {server.name}: {name} belongs to deployment {self.deployment!r}, not "
                f"{deployment!r} (two deployments share the server and a site id)"
            )


@dataclass(frozen=True)
class Held:
    """A site's database (or what is left of one) on a server."""

    site_id: int
    database: bool  # False: logins without their database (a provision cut short)
    bytes: int | None = None
    retired_at: float | None = None  # epoch seconds; None: in use
    deployment: str | None = None  # None: logins without a database, or a database not marked


def holdings(databases: Iterable[tuple[str, str | None, int | None]], logins: Iterable[str]) -> list[Held]:
    """What a server holds, by site id: from its site databases (name, comment, bytes) and the
    names of its site logins (and roles), a login without its database as such. A database with
    no size was dropped while it was listed (PostgreSQL's size of a gone database is NULL)."""
    found = {}
    for name, comment, size in databases:
        if size is None:
            continue
        site_id, marker = int(name[5:]), Marker.of(comment)
        found[site_id] = Held(site_id, True, int(size), marker.retired_at, marker.deployment)
    for login in logins:
        site_id = int(login[5:].partition("_")[0])
        found.setdefault(site_id, Held(site_id, False))
    return sorted(found.values(), key=lambda held: held.site_id)


@dataclass(frozen=True)
class Holdings:
    """What one server holds, or why it could not say."""

    server: DatabaseServer
    held: Sequence[Held] = ()
    error: str | None = None


@dataclass(frozen=True)
class QueryLimits:
    timeout_seconds: float
    max_rows: int
    max_bytes: int


def query_timeout(limits: QueryLimits) -> DatabaseRefused:
    return DatabaseRefused(
        f"the statement ran past {limits.timeout_seconds:g} s (DATABASE_QUERY_TIMEOUT_SECONDS)",
        code=ErrorCode.QUERY_TIMEOUT,
    )


def multiple_statements() -> DatabaseRefused:
    return DatabaseRefused(
        "one statement at a time: the console runs a single SQL statement", code=ErrorCode.MULTIPLE_STATEMENTS
    )


def query_failed(message: str) -> DatabaseRefused:
    """The server's own refusal of the statement (a syntax error, a missing privilege)."""
    return DatabaseRefused(message[:2000], code=ErrorCode.QUERY_FAILED)


@dataclass(frozen=True)
class DumpCommand:
    """A dump program with its arguments, and the environment holding the admin's password (never
    its command line, which every process on the host may read)."""

    argv: tuple[str, ...]
    env: dict[str, str]
    format: str  # DumpChunk.format


class Engine(Protocol):
    kind: DatabaseKind
    server: DatabaseServer

    async def provision(self, site_id: int, user: str, password: str, fresh: bool) -> None:
        """The site's database and both logins exist and nothing is marked retired.

        `fresh` (a grant no service holds yet): `user` logs in with `password`, the other login
        is locked and its sessions ended. Otherwise (the grant the site's service holds): `user`
        logs in with `password` unless the other login is the one that logs in, which means a
        password reset has moved the site to it since the grant was read (or is moving it): a
        stale grant never brings an old password back."""

    async def enable(self, site_id: int, user: str, password: str) -> None:
        """`user` (of an existing database) logs in with `password` from now on."""

    async def lock(self, site_id: int, user: str) -> None:
        """`user` no longer logs in, and its sessions are ended."""

    async def retire(self, site_id: int, at: float) -> None:
        """Both logins locked and their sessions ended; the database marked retired at `at` (kept
        if it was already: the retention counts from the first retirement)."""

    async def drop(self, site_id: int) -> None:
        """The database and its logins gone (nothing there: nothing to do)."""

    async def held(self) -> list[Held]:
        """Every site database (and login left without one) on the server."""

    async def usage(self, site_id: int) -> int | None:
        """Bytes the site's database holds; None when there is no such database."""

    async def query(self, grant: Grant, sql: str, limits: QueryLimits) -> QueryResult:
        """One statement as the site's own login."""

    def dump_command(self, site_id: int) -> DumpCommand: ...

    async def close(self) -> None: ...


P = TypeVar("P")


class PooledEngine(Generic[P]):
    """What both engines share: the server, the admin's pool `P` (made on first use, once however
    many ask at a time) and how an error names the server."""

    kind: DatabaseKind

    def __init__(self, server: DatabaseServer, timeout: float, connection_limit: int, deployment: str) -> None:
        self.server = server
        self._deployment = deployment
        self._timeout = timeout
        self._limit = connection_limit
        self._pool: P | None = None
        self._opening = asyncio.Lock()

    @property
    def _where(self) -> str:
        return f"{self.kind.value} server {self.server.name} ({self.server.host}:{self.server.port})"

    async def _open_pool(self) -> P:
        async with self._opening:
            if self._pool is None:
                self._pool = await self._make_pool()
            return self._pool

    async def _make_pool(self) -> P:
        raise NotImplementedError
