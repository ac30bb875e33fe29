"""Site databases: what a site may ask for (`Site.database`) and Director's requests about it.

A site with `"database": {"kind": "postgres"}` (or `"mysql"`) gets a database and a login of its
own on one of the operator's servers, handed to its tasks and terminals as `DATABASE_URL` and
`DIRECTOR_DATABASE_HOST`, `_PORT`, `_NAME`, `_USER`, `_PASSWORD`.

Requests go to `director.databases` with routing key = the operation, `reply_to` and
`correlation_id` set, and are answered as `director.files` requests are: `{"ok": true, "result":
{...}}` or `{"ok": false, "error": {"code", "message"}}` (`ErrorReply`); `database.dump` answers
with a stream of replies (`DumpChunk`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from orchestrator_contract.base import Model, SiteId

MAX_SQL = 64 * 1024


class DatabaseKind(StrEnum):
    POSTGRES = "postgres"
    MYSQL = "mysql"


class Database(Model):
    """The database a site asks for. Its kind never changes (`database_kind_change`): remove it
    (null) and ask for the other kind; a removed one is kept, locked, for the trash's retention
    (asking for it again within it brings it back as it was), then dropped with a dump left in
    the trash."""

    kind: DatabaseKind


# --- requests ----------------------------------------------------------------------------------


class _Request(Model):
    site_id: SiteId


class DatabaseCredentials(_Request):
    """The site's database and login, password included (for its owner's eyes only)."""

    type: Literal["database.credentials"] = "database.credentials"


class DatabaseResetPassword(_Request):
    """A new password, on the site's other login: the site's tasks move to it (start-first, no
    request lost), then the old login is locked and its sessions ended."""

    type: Literal["database.reset_password"] = "database.reset_password"


class DatabaseQuery(_Request):
    """One SQL statement as the site's own login, under a statement timeout; rows past
    DATABASE_QUERY_MAX_ROWS or DATABASE_QUERY_MAX_BYTES are left out (`truncated`)."""

    type: Literal["database.query"] = "database.query"
    sql: str = Field(min_length=1, max_length=MAX_SQL)


class DatabaseDump(_Request):
    """The database in its engine's own dump format (PostgreSQL: pg_dump's custom format, for
    pg_restore; MySQL: mariadb-dump's SQL), streamed as replies (`DumpChunk`)."""

    type: Literal["database.dump"] = "database.dump"


class DatabaseUsage(_Request):
    """How much the database holds."""

    type: Literal["database.usage"] = "database.usage"


DatabaseRequest = DatabaseCredentials | DatabaseResetPassword | DatabaseQuery | DatabaseDump | DatabaseUsage
DATABASE_REQUESTS: dict[str, type[DatabaseRequest]] = {
    model.model_fields["type"].default: model
    for model in (DatabaseCredentials, DatabaseResetPassword, DatabaseQuery, DatabaseDump, DatabaseUsage)
}


# --- replies -----------------------------------------------------------------------------------


class CredentialsResult(Model):
    kind: DatabaseKind
    host: str = Field(description="As the site's tasks reach the server.")
    port: int
    name: str
    user: str
    password: str
    url: str = Field(description="DATABASE_URL: postgresql://... or mysql://...")


Cell = str | int | float | bool | None


class QueryResult(Model):
    columns: list[str] = Field(description="Empty for a statement that returns no rows.")
    rows: list[list[Cell]] = Field(description="Numbers and booleans as JSON has them; everything else as text.")
    truncated: bool = Field(description="More rows were left out (DATABASE_QUERY_MAX_ROWS / _MAX_BYTES).")
    status: str = Field(description="What the server said it did, e.g. `INSERT 0 1` or `3 rows affected`.")


class DumpChunk(Model):
    """One piece of a dump; concatenated in `seq` order they are the dump."""

    seq: int = Field(ge=0)
    data: str = Field(json_schema_extra={"contentEncoding": "base64"})
    last: bool
    format: Literal["pg_custom", "sql"] = Field(description="pg_custom: pg_restore reads it; sql: mysql reads it.")
    sha256: str | None = Field(default=None, description="The last chunk: sha256 of the whole dump, hex.")
    size: int | None = Field(default=None, description="The last chunk: bytes of the whole dump.")


class DatabaseUsageResult(Model):
    kind: DatabaseKind
    name: str
    bytes: int = Field(description="As the server counts its files (PostgreSQL) or tables and indexes (MySQL).")


DatabaseResult = CredentialsResult | QueryResult | DumpChunk | DatabaseUsageResult
RESULTS: dict[str, type[DatabaseResult]] = {
    "database.credentials": CredentialsResult,
    "database.reset_password": CredentialsResult,
    "database.query": QueryResult,
    "database.dump": DumpChunk,
    "database.usage": DatabaseUsageResult,
}


class DatabaseOkReply(Model):
    """The request succeeded; `result` is the operation's (see `RESULTS`)."""

    ok: Literal[True] = True
    result: DatabaseResult
