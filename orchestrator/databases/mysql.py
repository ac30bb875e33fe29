"""MySQL/MariaDB site databases through aiomysql (the admin's work, and the console as the site).

aiomysql: asyncio-native, PyMySQL's pure-Python protocol underneath (no client library to build
or match to the server), maintained with aio-pika's own aio-libs family. It never asks the server
for multi-statements, so the console's one-statement rule is the server's.

Per site (see `sites.databases`): the database `site_0042` and the users `site_0042_a@%` and
`site_0042_b@%`, each with every privilege on that one database and nothing else (the grant's name
escapes `_`, which a grant would otherwise read as a wildcard: `site_0042` would also match
`site-0042`), a connection limit, and locked until enabled. MySQL has no per-database size limit:
`usage` reports the size, `status` shows it. Passwords reach the server as
`mysql_native_password` hashes, never in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiomysql
import pymysql
import pymysql.constants.CLIENT

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
from orchestrator_contract.databases import DatabaseKind, QueryResult

# Client errors of a server that is not there (2003 cannot connect, 2006 gone away, 2013 lost).
_GONE = {2003, 2006, 2013}
_ACCESS_DENIED = {1044, 1045, 1698}
_TIMEOUT = {1969, 3024}  # max_statement_time exceeded (MariaDB), max_execution_time (MySQL)
_SYNTAX = 1064
_UNAVAILABLE = (OSError, TimeoutError, asyncio.IncompleteReadError)
# Past the statement's own limit, how long the console waits before the admin ends its session.
_GRACE_SECONDS = 1.0
# The server's notes ("user exists" on an idempotent CREATE ... IF NOT EXISTS) are expected.
warnings.filterwarnings("ignore", category=pymysql.err.Warning)


def native_hash(password: str) -> str:
    """`mysql_native_password`'s stored form of `password` (for `IDENTIFIED BY PASSWORD`)."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def _user(name: str) -> str:
    if not LOGIN_NAME.fullmatch(name):
        raise ValueError(f"not a site login: {name!r}")
    return f"'{name}'@'%'"


def _schema(name: str) -> str:
    if not SITE_NAME.fullmatch(name):
        raise ValueError(f"not a site database: {name!r}")
    return f"`{name}`"


def _grant_pattern(name: str) -> str:
    """The database as a grant names it: `_` escaped, or it matches any one character."""
    return "`" + _schema(name).strip("`").replace("_", "\\_") + "`"


async def _connect_single_statements(**options: Any) -> aiomysql.Connection:
    """A connection that never asked for multi-statements. aiomysql asks for them on every
    connection; this one's capability flag is cleared before its handshake, so the server itself
    refuses a second statement (tests/integration/test_database_engines.py holds it to that)."""
    connection = aiomysql.Connection(**options)
    connection.client_flag &= ~pymysql.constants.CLIENT.MULTI_STATEMENTS
    try:
        await connection._connect()
    except BaseException:
        connection.close()
        raise
    return connection


def _code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


class MySQL(PooledEngine[aiomysql.Pool]):
    kind = DatabaseKind.MYSQL

    def _translate(self, exc: BaseException) -> Exception:
        code = _code(exc)
        if isinstance(exc, _UNAVAILABLE) or code in _GONE:
            return DatabaseUnavailable(f"{self._where}: {type(exc).__name__}: {exc}")
        if code in _ACCESS_DENIED:
            return DatabaseError(f"{self._where}: the admin was refused ({code}): {exc}")
        return DatabaseError(f"{self._where}: {exc}")

    async def _make_pool(self) -> aiomysql.Pool:
        return await aiomysql.create_pool(
            host=self.server.host,
            port=self.server.port,
            user=self.server.admin_user,
            password=admin_password(self.server),
            minsize=0,
            maxsize=2,
            connect_timeout=self._timeout,
            autocommit=True,
            pool_recycle=60,
        )

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[aiomysql.Cursor]:
        try:
            pool = await self._open_pool()
            async with asyncio.timeout(self._timeout * 3), pool.acquire() as connection, connection.cursor() as cursor:
                yield cursor
        except (pymysql.err.MySQLError, *_UNAVAILABLE) as exc:
            raise self._translate(exc) from None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await self._pool.wait_closed()
            self._pool = None

    # --- provisioning -----------------------------------------------------------------------

    async def provision(self, site_id: int, user: str, password: str, fresh: bool) -> None:
        name = database_name(site_id)
        other = other_login(site_id, user)
        async with self._admin() as db:
            if (found := await self._marker(db, name)) is not None:
                found.refuse_if_foreign(name, self.server, self._deployment)
            # Users first, locked; the database; the grants; the login unlocked last. Each is
            # idempotent, so a provision cut short is completed by the next one.
            for login in logins(site_id):
                await db.execute(
                    f"CREATE USER IF NOT EXISTS {_user(login)} WITH MAX_USER_CONNECTIONS {self._limit} ACCOUNT LOCK"
                )
            await db.execute(
                f"CREATE DATABASE IF NOT EXISTS {_schema(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            for login in logins(site_id):
                await db.execute(f"GRANT ALL PRIVILEGES ON {_grant_pattern(name)}.* TO {_user(login)}")
            await db.execute(f"ALTER DATABASE {_schema(name)} COMMENT %s", (Marker(self._deployment).comment(),))
            if fresh:
                await db.execute(f"ALTER USER {_user(other)} ACCOUNT LOCK")
                await self._end_sessions(db, [other])
                await self._enable(db, user, password)
            elif not await self._logs_in(db, other):
                await self._enable(db, user, password)

    @staticmethod
    async def _logs_in(db: aiomysql.Cursor, user: str) -> bool:
        """Whether the login exists and is not locked (MariaDB keeps that in `global_priv`)."""
        _user(user)  # a site login's name, or a bug
        await db.execute(
            "SELECT JSON_VALUE(Priv, '$.account_locked') FROM mysql.global_priv WHERE User = %s AND Host = '%%'",
            (user,),
        )
        row = await db.fetchone()
        return row is not None and str(row[0]) in ("0", "false")

    async def enable(self, site_id: int, user: str, password: str) -> None:
        async with self._admin() as db:
            await self._enable(db, user, password)

    async def _enable(self, db: aiomysql.Cursor, user: str, password: str) -> None:
        # The hash is hex (no quoting to get wrong), and the statement has no arguments: a user
        # named at host '%' would read as a format to the driver.
        await db.execute(
            f"ALTER USER {_user(user)} IDENTIFIED BY PASSWORD '{native_hash(password)}' "
            f"WITH MAX_USER_CONNECTIONS {self._limit} ACCOUNT UNLOCK"
        )

    async def lock(self, site_id: int, user: str) -> None:
        async with self._admin() as db:
            await db.execute(f"ALTER USER IF EXISTS {_user(user)} ACCOUNT LOCK")
            await self._end_sessions(db, [user])

    async def _end_sessions(self, db: aiomysql.Cursor, users: list[str]) -> None:
        names = ", ".join(_user(user).partition("@")[0] for user in users)  # checked names, quoted
        await db.execute(f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN ({names})")
        for (session,) in await db.fetchall():
            with contextlib.suppress(pymysql.err.MySQLError):  # it ended meanwhile
                await db.execute("KILL CONNECTION %s", (session,))

    async def retire(self, site_id: int, at: float) -> None:
        name = database_name(site_id)
        async with self._admin() as db:
            for login in logins(site_id):
                await db.execute(f"ALTER USER IF EXISTS {_user(login)} ACCOUNT LOCK")
            await self._end_sessions(db, list(logins(site_id)))
            marker = await self._marker(db, name)
            if marker is not None and marker.retired_at is None:
                retired = Marker(self._deployment, at).comment()
                await db.execute(f"ALTER DATABASE {_schema(name)} COMMENT %s", (retired,))

    @staticmethod
    async def _marker(db: aiomysql.Cursor, name: str) -> Marker | None:
        """The database's marker; None when there is no such database."""
        await db.execute("SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
        row = await db.fetchone()
        return None if row is None else Marker.of(row[0])

    async def drop(self, site_id: int) -> None:
        async with self._admin() as db:
            await self._end_sessions(db, list(logins(site_id)))
            await db.execute(f"DROP DATABASE IF EXISTS {_schema(database_name(site_id))}")
            for login in logins(site_id):
                await db.execute(f"DROP USER IF EXISTS {_user(login)}")

    async def held(self) -> list[Held]:
        async with self._admin() as db:
            await db.execute(
                "SELECT s.SCHEMA_NAME, s.SCHEMA_COMMENT, COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0) "
                "FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t "
                "ON t.TABLE_SCHEMA = s.SCHEMA_NAME WHERE s.SCHEMA_NAME REGEXP '^site_[0-9]{4,10}$' "
                "GROUP BY s.SCHEMA_NAME, s.SCHEMA_COMMENT"
            )
            databases = await db.fetchall()
            await db.execute("SELECT User FROM mysql.global_priv WHERE User REGEXP '^site_[0-9]{4,10}_[ab]$'")
            users = await db.fetchall()
        return holdings(databases, (user for (user,) in users))

    async def usage(self, site_id: int) -> int | None:
        name = database_name(site_id)
        async with self._admin() as db:
            await db.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
            if await db.fetchone() is None:
                return None
            await db.execute(
                "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s",
                (name,),
            )
            row = await db.fetchone()
        return int(row[0]) if row else 0

    # --- as the site ------------------------------------------------------------------------

    async def query(self, grant: Grant, sql: str, limits: QueryLimits) -> QueryResult:
        try:
            connection = await _connect_single_statements(
                host=self.server.host,
                port=self.server.port,
                user=grant.user,
                password=grant.password,
                db=grant.name,
                connect_timeout=self._timeout,
                autocommit=True,
                local_infile=False,
            )
        except (pymysql.err.MySQLError, *_UNAVAILABLE) as exc:
            if _code(exc) in _ACCESS_DENIED:
                raise DatabaseRefused(f"the site's login was refused ({_code(exc)})") from None
            raise self._translate(exc) from None
        session = connection.thread_id()
        try:
            async with asyncio.timeout(limits.timeout_seconds + _GRACE_SECONDS):
                return await self._run(connection, sql, limits)
        except pymysql.err.MySQLError as exc:
            code = _code(exc)
            if code in _GONE:
                raise self._translate(exc) from None
            if code in _TIMEOUT:
                raise query_timeout(limits) from None
            if mentions_more_statements(sql, code == _SYNTAX):
                raise multiple_statements() from None
            raise query_failed(f"{code}: {exc.args[-1] if exc.args else exc}") from None
        except TimeoutError:
            # MariaDB lets a statement lift its own limit (`SET STATEMENT max_statement_time=0 FOR
            # ...`), and a server notices a closed client only when it next writes: the admin ends
            # the session, so nothing of the console's keeps running past its timeout.
            connection.close()
            await self._kill(session)
            raise query_timeout(limits) from None
        except _UNAVAILABLE as exc:
            raise self._translate(exc) from None
        finally:
            connection.close()  # at once: an unread rest of a big result is not drained first

    async def _kill(self, session: int) -> None:
        async with self._admin() as db:
            with contextlib.suppress(pymysql.err.MySQLError):  # it ended meanwhile
                await db.execute("KILL CONNECTION %s", (session,))

    @staticmethod
    async def _run(connection: aiomysql.Connection, sql: str, limits: QueryLimits) -> QueryResult:
        async with connection.cursor() as prepare:
            await prepare.execute("SET SESSION max_statement_time = %s", (limits.timeout_seconds,))
        cursor = await connection.cursor(aiomysql.SSCursor)  # rows as they come, not all at once
        await cursor.execute(sql, None)
        if not cursor.description:
            return QueryResult(columns=[], rows=[], truncated=False, status=f"{cursor.rowcount} rows affected")
        columns = [str(column[0]) for column in cursor.description]
        return await read_rows(columns, cursor.fetchmany, limits.max_rows, limits.max_bytes)

    def dump_command(self, site_id: int) -> DumpCommand:
        return DumpCommand(
            argv=(
                "mariadb-dump",
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--no-tablespaces",
                "--skip-comments",
                f"--host={self.server.host}",
                f"--port={self.server.port}",
                f"--user={self.server.admin_user}",
                "--databases",
                database_name(site_id),
            ),
            env={"MYSQL_PWD": admin_password(self.server)},
            format="sql",
        )
