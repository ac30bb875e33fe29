"""Site databases: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.config.base import Group

# The local stack's admin passwords (scripts/stack-databases.sh); production: Docker secrets.
_LOCAL_DATABASES = Path("/etc/director-stack/databases")


class DatabaseServer(BaseModel):
    """One database server sites' databases are made on (`DATABASE_SERVERS`, a JSON list)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Recorded on every site service with a database (`com.director.database`): a site stays on
    # its server. Never rename a server that holds databases.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    kind: Literal["postgres", "mysql"]
    # Where the orchestrator reaches it as its admin (and runs queries and dumps).
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    admin_user: str = Field(default="director", min_length=1, max_length=63)
    # A file holding the admin password (a Docker secret): it never leaves the orchestrator.
    admin_password_file: Path
    # Where sites reach it, when not at `host`/`port` (handed to them as DIRECTOR_DATABASE_HOST).
    site_host: str | None = Field(default=None, min_length=1, max_length=253)
    site_port: int | None = Field(default=None, ge=1, le=65535)

    def admin_password(self) -> str:
        return self.admin_password_file.read_text().strip()


def _local_database_servers() -> list[DatabaseServer]:
    return [
        DatabaseServer(
            name="postgres", kind="postgres", host="127.0.0.1", port=5432, site_host="198.18.213.1",
            admin_password_file=_LOCAL_DATABASES / "postgres.password",
        ),
        DatabaseServer(
            name="mysql", kind="mysql", host="127.0.0.1", port=3306, site_host="198.18.213.1",
            admin_password_file=_LOCAL_DATABASES / "mysql.password",
        ),
    ]  # fmt: skip


class DatabaseSettings(Group):
    # --- site databases -----------------------------------------------------------------------
    # The servers sites' databases are made on; a new site's goes to one of its kind chosen by
    # its id (the same one on every retry), an existing one stays where it is. Empty: no site
    # may ask for a database (`database_not_offered`).
    database_servers: list[DatabaseServer] = Field(default_factory=_local_database_servers)
    # Connect and admin statement timeout; a server silent past it is `database_unavailable`.
    database_timeout_seconds: float = Field(default=10.0, gt=0)
    # Sessions each of a site's logins may hold (its tasks, its terminals, the console).
    database_connection_limit: int = Field(default=20, ge=1, le=10_000)
    # The one-statement console (`database.query`), run as the site's own login.
    database_query_enabled: bool = True
    database_query_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    database_query_max_rows: int = Field(default=500, ge=1, le=100_000)
    database_query_max_bytes: int = Field(default=256 * 1024, ge=1024, le=2 * 1024 * 1024)
    # Dumps (`database.dump`, and the final one of a dropped database): at most this many bytes,
    # this many at once (and one per site).
    database_max_dump_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    database_max_dumps: int = Field(default=4, ge=1)
    # A database whose site or request is gone is kept this long (its logins locked: it can be
    # had back by asking for it again), then dumped into the trash and dropped. Unset: the
    # trash's own age limit (TRASH_MAX_AGE_DAYS).
    database_retention_days: float | None = Field(default=None, ge=0)
