"""Pure: a site's database as its service spec asks for it, and the names it has on its server.

A site's database is `site_0042` with two logins, `site_0042_a` and `site_0042_b`, of which one is
in use: a password reset enables the other with a new password, moves the site's tasks to it
(start-first: the old task keeps working on the old login until its replacement answers), then
locks the old one. (PostgreSQL has one password per role and MariaDB no dual passwords: two
logins are how a password changes with no request lost.) On PostgreSQL both logins are members
of the group role `site_0042`, which owns the database and, through the logins' default `role`
setting, everything made in it.

The login in use and its password live in the site service's environment: replicated with the
swarm, read by whichever orchestrator replica handles the site, handed to the tasks and the
terminals as they are (`grant_of` reads them back). A site without a service has no password
anywhere: asking for the database again sets a new one.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from orchestrator.config import DatabaseServer
from orchestrator.errors import DatabaseKindChange, DatabaseNotOffered
from orchestrator.labels import DATABASE
from orchestrator_contract.databases import Database, DatabaseKind
from orchestrator_contract.env import DATABASE_ENV_KEYS
from orchestrator_contract.sites import service_name

LOGINS = ("a", "b")
PASSWORD_BYTES = 24  # 192 bits, 32 URL-safe characters: nothing to quote in a URL
_SCHEMES = {DatabaseKind.POSTGRES: "postgresql", DatabaseKind.MYSQL: "mysql"}


def database_name(site_id: int) -> str:
    """The site's database (and, on PostgreSQL, its group role): the service's name."""
    return service_name(site_id)


def logins(site_id: int) -> tuple[str, str]:
    name = database_name(site_id)
    return f"{name}_{LOGINS[0]}", f"{name}_{LOGINS[1]}"


def other_login(site_id: int, user: str) -> str:
    first, second = logins(site_id)
    return second if user == first else first


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


@dataclass(frozen=True)
class Grant:
    """A site's database and the login its tasks use. `host`/`port`: as the tasks reach the server."""

    kind: DatabaseKind
    server: str
    host: str
    port: int
    name: str
    user: str
    password: str

    @property
    def site_id(self) -> int:
        return int(self.name.removeprefix("site_"))

    @property
    def label(self) -> str:
        return f"{self.kind.value}:{self.server}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        login = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"{_SCHEMES[self.kind]}://{login}@{host}:{self.port}/{self.name}"

    def env(self) -> dict[str, str]:
        values = (self.url, self.host, str(self.port), self.name, self.user, self.password)
        return dict(zip(DATABASE_ENV_KEYS, values, strict=True))

    def __repr__(self) -> str:  # never a password in a log line or a traceback
        return f"Grant({self.label} {self.name} as {self.user})"


def grant_of(labels: Mapping[str, str], env: Mapping[str, str]) -> Grant | None:
    """The grant a service's spec holds (its label and env), or None."""
    kind, _, server = labels.get(DATABASE, "").partition(":")
    if not server or kind not in DatabaseKind.__members__.values():
        return None
    try:
        _, host, port, name, user, password = (env[key] for key in DATABASE_ENV_KEYS)
        return Grant(DatabaseKind(kind), server, host, int(port), name, user, password)
    except (KeyError, ValueError):
        return None


def server_for(kind: DatabaseKind, site_id: int, servers: Sequence[DatabaseServer]) -> DatabaseServer:
    """The server a new database of the site goes to: one of its kind, by the site's id, so every
    retry of a provision picks the same one."""
    offered = [server for server in servers if server.kind == kind.value]
    if not offered:
        raise DatabaseNotOffered(f"no {kind.value} database server is configured (DATABASE_SERVERS)")
    return offered[site_id % len(offered)]


def server_named(name: str, servers: Sequence[DatabaseServer]) -> DatabaseServer | None:
    return next((server for server in servers if server.name == name), None)


def desired_grant(
    site_id: int, wanted: Database | None, current: Grant | None, servers: Sequence[DatabaseServer]
) -> Grant | None:
    """The grant the site's spec asks for: the one it has (same kind), a new one, or none.
    A change of kind is refused; a grant whose server is no longer configured keeps its record
    (the server holds the data: an operator moves it, not an event)."""
    if wanted is None:
        return None
    if current is not None:
        if current.kind != wanted.kind:
            raise DatabaseKindChange(
                f"the site has a {current.kind.value} database; remove it (null) before asking for {wanted.kind.value}"
            )
        return current
    server = server_for(wanted.kind, site_id, servers)
    return Grant(
        kind=wanted.kind,
        server=server.name,
        host=server.site_host or server.host,
        port=server.site_port or server.port,
        name=database_name(site_id),
        user=logins(site_id)[0],
        password=new_password(),
    )


def with_login(grant: Grant, user: str, password: str) -> Grant:
    return Grant(grant.kind, grant.server, grant.host, grant.port, grant.name, user, password)
