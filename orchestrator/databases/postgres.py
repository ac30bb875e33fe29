"""PostgreSQL site databases through asyncpg (the admin's work, and the console as the site).

asyncpg: asyncio-native (no thread per call), the binary protocol, typed exceptions carrying
SQLSTATE, and every statement it runs with arguments is prepared, which PostgreSQL refuses to do
for more than one command: the console's one-statement rule is the server's, not a parser of ours.

Per site (see `sites.databases`): the group role `site_0042` (NOLOGIN) owns the database
`site_0042`; the logins `site_0042_a` and `site_0042_b` are its members with `role` set to it, so
whatever either makes belongs to the group. Neither may create databases or roles; each has a
connection limit; `CONNECT` and `TEMPORARY` on the database are revoked from PUBLIC (another
site's login cannot even connect). PostgreSQL has no per-database size limit: `usage` reports the
size, `status` shows it. Passwords reach the server only as SCRAM-SHA-256 verifiers, never in clear
(a statement log cannot leak them). The admin is a member of every group role, which is what lets
it make the database owned by the group, and drop it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import os
from collections.abc import AsyncIterator

import asyncpg

from orchestrator.databases.engines import (
    LOGIN_NAME,
    SITE_NAME,
    DumpCommand,
    Held,
    Marker,
    PooledEngine,
    QueryLimits,
    admin_password,
    holdings,
    multiple_statements,
    query_failed,
    query_timeout,
)
from orchestrator.databases.rows import mentions_more_statements, read_rows
from orchestrator.errors import DatabaseError, DatabaseRefused, DatabaseUnavailable
from orchestrator.sites.databases import Grant, database_name, logins, other_login
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.databases import DatabaseKind, QueryResult

SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)
_CANCELED = "57014"  # query_canceled: statement_timeout
_MULTIPLE = "cannot insert multiple commands into a prepared statement"


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, 7677): what
    `ALTER ROLE ... PASSWORD` is given instead of the password."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _ident(name: str) -> str:
    """A role or database name of ours, quoted; anything else is a bug."""
    if not (SITE_NAME.fullmatch(name) or LOGIN_NAME.fullmatch(name)):
        raise ValueError(f"not a site database name: {name!r}")
    return f'"{name}"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Postgres(PooledEngine[asyncpg.Pool]):
    kind = DatabaseKind.POSTGRES

    # --- the admin's connections ------------------------------------------------------------

    async def _make_pool(self) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            host=self.server.host,
            port=self.server.port,
            user=self.server.admin_user,
            password=functools.partial(admin_password, self.server),
            database="postgres",
            min_size=0,
            max_size=2,
            timeout=self._timeout,
            command_timeout=self._timeout,
            max_inactive_connection_lifetime=60,
            server_settings={"application_name": "director-orchestrator"},
        )

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            pool = await self._open_pool()
            async with pool.acquire(timeout=self._timeout) as connection:
                yield connection
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            raise DatabaseError(f"{self._where}: the admin was refused: {exc}") from None
        except asyncpg.InvalidPasswordError:
            raise DatabaseError(f"{self._where}: the admin's password was refused") from None
        except asyncpg.PostgresError as exc:
            raise DatabaseError(f"{self._where}: {exc.sqlstate}: {exc}") from None
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"{self._where}: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await self._pool.close()
            self._pool = None

    # --- provisioning -----------------------------------------------------------------------

    async def provision(self, site_id: int, user: str, password: str, fresh: bool) -> None:
        group, members = database_name(site_id), logins(site_id)
        other = other_login(site_id, user)
        async with self._admin() as db:
            Marker.of(await db.fetchval(_COMMENT, group)).refuse_if_foreign(group, self.server, self._deployment)
            # The roles first, in one transaction, none able to log in yet; then the database
            # (its own transaction: CREATE DATABASE cannot share one); the login enabled last. A
            # provision cut short leaves roles nobody can log in as, which the next one completes.
            async with db.transaction():
                existing = {r["rolname"] for r in await db.fetch(_ROLES, [group, *members])}
                if group not in existing:
                    await db.execute(f"CREATE ROLE {_ident(group)} NOLOGIN NOCREATEDB NOCREATEROLE")
                    await db.execute(f"GRANT {_ident(group)} TO CURRENT_USER")
                for member in members:
                    if member not in existing:
                        await db.execute(
                            f"CREATE ROLE {_ident(member)} NOLOGIN NOCREATEDB NOCREATEROLE INHERIT "
                            f"CONNECTION LIMIT {self._limit} IN ROLE {_ident(group)}"
                        )
                        # Sessions act as the group: what either login makes, both can use.
                        await db.execute(f"ALTER ROLE {_ident(member)} SET role = {_literal(group)}")
            if not await db.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", group):
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # a racing replica made it
                    await db.execute(f"CREATE DATABASE {_ident(group)} OWNER {_ident(group)}")
            async with db.transaction():
                await db.execute(f"REVOKE ALL ON DATABASE {_ident(group)} FROM PUBLIC")
                await db.execute(f"ALTER DATABASE {_ident(group)} CONNECTION LIMIT {self._limit}")
                marker = Marker(self._deployment).comment()
                await db.execute(f"COMMENT ON DATABASE {_ident(group)} IS {_literal(marker)}")
                if fresh:
                    await db.execute(f"ALTER ROLE {_ident(other)} NOLOGIN PASSWORD NULL")
                    await self._enable(db, user, password)
                elif not await db.fetchval("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", other):
                    await self._enable(db, user, password)
            if fresh:
                await db.execute(_END_SESSIONS, [other])

    async def enable(self, site_id: int, user: str, password: str) -> None:
        async with self._admin() as db:
            await self._enable(db, user, password)

    async def _enable(self, db: asyncpg.Connection, user: str, password: str) -> None:
        verifier = scram_verifier(password)
        await db.execute(f"ALTER ROLE {_ident(user)} LOGIN PASSWORD {_literal(verifier)}")

    async def lock(self, site_id: int, user: str) -> None:
        async with self._admin() as db:
            await db.execute(f"ALTER ROLE {_ident(user)} NOLOGIN PASSWORD NULL")
            await db.execute(_END_SESSIONS, [user])

    async def retire(self, site_id: int, at: float) -> None:
        group, members = database_name(site_id), logins(site_id)
        async with self._admin() as db:
            existing = {r["rolname"] for r in await db.fetch(_ROLES, list(members))}
            for member in members:
                if member in existing:
                    await db.execute(f"ALTER ROLE {_ident(member)} NOLOGIN PASSWORD NULL")
            await db.execute(_END_SESSIONS, list(members))
            exists = await db.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", group)
            if exists and Marker.of(await db.fetchval(_COMMENT, group)).retired_at is None:
                retired = Marker(self._deployment, at).comment()
                await db.execute(f"COMMENT ON DATABASE {_ident(group)} IS {_literal(retired)}")

    async def drop(self, site_id: int) -> None:
        group, members = database_name(site_id), logins(site_id)
        async with self._admin() as db:
            await db.execute(f"DROP DATABASE IF EXISTS {_ident(group)} WITH (FORCE)")
            for role in (*members, group):
                await db.execute(f"DROP ROLE IF EXISTS {_ident(role)}")

    async def held(self) -> list[Held]:
        async with self._admin() as db:
            databases = await db.fetch(
                "SELECT datname, shobj_description(oid, 'pg_database') AS comment, pg_database_size(oid) AS size "
                "FROM pg_database WHERE datname ~ '^site_[0-9]{4,10}$'"
            )
            roles = await db.fetch("SELECT rolname FROM pg_roles WHERE rolname ~ '^site_[0-9]{4,10}(_[ab])?$'")
        return holdings(((r["datname"], r["comment"], r["size"]) for r in databases), (r["rolname"] for r in roles))

    async def usage(self, site_id: int) -> int | None:
        async with self._admin() as db:
            size = await db.fetchval(
                "SELECT pg_database_size(oid) FROM pg_database WHERE datname = $1", database_name(site_id)
            )
        return None if size is None else int(size)

    # --- as the site ------------------------------------------------------------------------

    async def query(self, grant: Grant, sql: str, limits: QueryLimits) -> QueryResult:
        timeout_ms = max(1, round(limits.timeout_seconds * 1000))
        try:
            connection = await asyncpg.connect(
                host=self.server.host,
                port=self.server.port,
                user=grant.user,
                password=grant.password,
                database=grant.name,
                timeout=self._timeout,
                statement_cache_size=0,
                server_settings={
                    "application_name": "director-console",
                    "statement_timeout": str(timeout_ms),
                    "idle_in_transaction_session_timeout": str(timeout_ms * 2),
                },
            )
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
            raise DatabaseRefused(
                f"the site's login was refused ({exc.sqlstate})", code=ErrorCode.DATABASE_ERROR
            ) from None
        except asyncpg.PostgresError as exc:
            raise DatabaseRefused(f"{exc.sqlstate}: {exc}", code=ErrorCode.DATABASE_ERROR) from None
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"{self._where}: {type(exc).__name__}: {exc}") from None
        try:
            # Past the server's own timeout, a server that no longer answers is cut off here.
            async with asyncio.timeout(limits.timeout_seconds + self._timeout):
                return await self._run(connection, sql, limits)
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == _CANCELED:
                raise query_timeout(limits) from None
            if _MULTIPLE in str(exc) or mentions_more_statements(sql, exc.sqlstate == "42601"):
                raise multiple_statements() from None
            raise query_failed(f"{exc.sqlstate}: {exc}") from None
        except TimeoutError:
            raise DatabaseRefused(
                f"the server did not answer within {limits.timeout_seconds + self._timeout:g} s",
                code=ErrorCode.QUERY_TIMEOUT,
            ) from None
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"{self._where}: {type(exc).__name__}: {exc}") from None
        finally:
            connection.terminate()

    @staticmethod
    async def _run(connection: asyncpg.Connection, sql: str, limits: QueryLimits) -> QueryResult:
        statement = await connection.prepare(sql)
        columns = [attribute.name for attribute in statement.get_attributes()]
        if not columns:
            await statement.fetch()  # autocommit, as a client would run it
            return QueryResult(columns=[], rows=[], truncated=False, status=statement.get_statusmsg() or "")
        async with connection.transaction():  # a cursor lives in one; it commits what RETURNING changed
            cursor = await statement.cursor()
            return await read_rows(columns, cursor.fetch, limits.max_rows, limits.max_bytes)

    def dump_command(self, site_id: int) -> DumpCommand:
        return DumpCommand(
            argv=(
                "pg_dump",
                "--format=custom",
                "--no-password",
                f"--host={self.server.host}",
                f"--port={self.server.port}",
                f"--username={self.server.admin_user}",
                f"--dbname={database_name(site_id)}",
            ),
            env={"PGPASSWORD": admin_password(self.server), "PGCONNECT_TIMEOUT": str(round(self._timeout))},
            format="pg_custom",
        )


_COMMENT = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1"
_ROLES = "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])"
_END_SESSIONS = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1::text[])"
