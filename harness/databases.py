"""The local stack's database servers (scripts/stack-databases.sh) as tests use them: the
orchestrator's engines on them, a site's login connecting as a site task would, the servers'
own view (as their superusers) and a gate in front of a server that a test can close."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import aiomysql
import asyncpg
import docker

from harness import scope
from orchestrator.config import DatabaseServer, Settings
from orchestrator.databases.engines import Engine
from orchestrator.databases.mysql import MySQL
from orchestrator.databases.postgres import Postgres
from orchestrator.sites.databases import Grant

SETTINGS = Settings()
SERVERS = {server.kind: server for server in SETTINGS.database_servers}
KINDS = ("postgres", "mysql")


def engine(
    kind: str, server: DatabaseServer | None = None, timeout: float = 5.0, limit: int = 5, deployment: str = ""
) -> Engine:
    """An engine as this test process's deployment has it (or `deployment`'s)."""
    chosen = server or SERVERS[kind]
    made = Postgres if kind == "postgres" else MySQL
    return made(chosen, timeout, limit, deployment or scope.DEPLOYMENT)


async def connect_as(grant: Grant, database: str | None = None, host: str | None = None) -> None:
    """Log in as the grant's user into `database` (its own by default), from this host through the
    address sites use, run a statement, and leave; the driver's error when refused."""
    address = host or grant.host
    if grant.kind == "postgres":
        connection = await asyncpg.connect(
            host=address, port=grant.port, user=grant.user, password=grant.password,
            database=database or grant.name, timeout=5,
        )  # fmt: skip
        try:
            await connection.fetchval("SELECT 1")
        finally:
            await connection.close()
    else:
        mysql = await aiomysql.connect(
            host=address, port=grant.port, user=grant.user, password=grant.password,
            db=database or grant.name, connect_timeout=5,
        )  # fmt: skip
        try:
            async with mysql.cursor() as cursor:
                await cursor.execute("SELECT 1")
        finally:
            mysql.close()


def superuser_sql(kind: str, sql: str, database: str = "postgres") -> str:
    """A statement as the server's own superuser (its local socket); its output, tab-separated."""
    if kind == "postgres":
        argv = ["su", "postgres", "-c", f"psql -At -F '\t' -d {database} -c \"{sql}\""]
    else:
        argv = ["mariadb", "--protocol=socket", "-u", "root", "-N", "-B", "-e", sql]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


def roles_of(kind: str, site_id: int) -> list[str]:
    """The site's roles or users on the server, by name."""
    if kind == "postgres":
        found = superuser_sql(kind, f"SELECT rolname FROM pg_roles WHERE rolname ~ '^site_{site_id:04d}(_[ab])?$'")
    else:
        found = superuser_sql(kind, f"SELECT User FROM mysql.global_priv WHERE User LIKE 'site\\\\_{site_id:04d}%'")
    return sorted(found.split())


def databases_of(kind: str, site_id: int) -> list[str]:
    if kind == "postgres":
        found = superuser_sql(kind, f"SELECT datname FROM pg_database WHERE datname = 'site_{site_id:04d}'")
    else:
        found = superuser_sql(kind, f"SHOW DATABASES LIKE 'site\\\\_{site_id:04d}'")
    return found.split()


async def wipe(site_ids: Iterable[int]) -> None:
    """Drop whatever the servers hold of these sites (a test's leftovers)."""
    ids = set(site_ids)
    for kind in KINDS:
        held = engine(kind)
        try:
            for found in await held.held():
                if found.site_id in ids:
                    await held.drop(found.site_id)
        finally:
            await held.close()


class Gate:
    """A TCP relay in front of a database server: the orchestrator pointed at it sees the server
    stop (connections refused, sessions cut) when the gate closes, and nobody else does."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for pipe in list(self._pipes):
            pipe.cancel()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        for task in (
            asyncio.create_task(pipe(reader, upstream_writer)),
            asyncio.create_task(pipe(upstream_reader, writer)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


@contextlib.asynccontextmanager
async def gate(kind: str) -> AsyncIterator[Gate]:
    server = SERVERS[kind]
    opened = Gate(server.host, server.port)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


# The clients a site image gets to read its database (SITE_PACKAGES has them): psql and mariadb.
CLIENT_PACKAGES = ("postgresql-client", "mariadb-client-core")
SITE_DEBS = Path("/var/lib/director-registry/debs")
# stack-up.sh's site packages step, for a local package repository that lacks the clients (a
# `make up` of an older checkout leaves it so): the same packages and their dependencies.
_FETCH_DEBS = r"""set -e
want="$(printf '%s\n' $PACKAGES | sort -u | tr '\n' ' ')"
rm -rf "$DEBS.new" && mkdir -p "$DEBS.new"
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances $PACKAGES | grep -E '^[a-z0-9]' | sort -u)
cd "$DEBS.new" && apt-get download -qq $closure && apt-ftparchive packages . >Packages
echo "$want" >.packages && rm -rf "$DEBS" && mv "$DEBS.new" "$DEBS"
"""


def ensure_client_packages() -> None:
    """The local package repository holds the database clients site images are built with."""
    held = (SITE_DEBS / ".packages").read_text().split() if (SITE_DEBS / ".packages").exists() else []
    if set(CLIENT_PACKAGES) <= set(held):
        return
    packages = " ".join(sorted({*held, *CLIENT_PACKAGES}))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PACKAGES": packages, "DEBS": str(SITE_DEBS)}
    subprocess.run(["bash", "-c", _FETCH_DEBS], env=env, check=True, capture_output=True, timeout=300)


# A page made at each request from the site's database, by its own login, through the env it
# was handed: what a site's app does (busybox httpd runs cgi-bin/index.cgi for `/`).
_PAGE = r"""#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
sql='SELECT body FROM notes ORDER BY id'
case "$DATABASE_URL" in
postgresql:*) exec /usr/lib/postgresql/15/bin/psql "$DATABASE_URL" -XAtc "$sql" 2>&1 ;;
mysql:*) MYSQL_PWD="$DIRECTOR_DATABASE_PASSWORD" exec mariadb --no-defaults -N -B \
    -h "$DIRECTOR_DATABASE_HOST" -P "$DIRECTOR_DATABASE_PORT" -u "$DIRECTOR_DATABASE_USER" \
    -e "$sql" "$DIRECTOR_DATABASE_NAME" 2>&1 ;;
*) echo "no database" ;;
esac
"""


def write_database_site(sites_root: Path, site_id: int) -> None:
    """A site whose page is read from its database's `notes` table at every request (the CGI
    lives in the site directory: a task's /tmp is mounted noexec)."""
    site_dir = sites_root / f"site_{site_id:04d}"
    (site_dir / "public" / "cgi-bin").mkdir(parents=True, exist_ok=True)
    (site_dir / "private").mkdir(exist_ok=True)
    page = site_dir / "public" / "cgi-bin" / "index.cgi"
    page.write_text(_PAGE)
    page.chmod(0o755)
    (site_dir / "run.sh").write_text('#!/bin/sh\nexec httpd -f -p "$PORT" -h /site/public\n')


def push_for_site(api: docker.APIClient, image: str, site_id: int) -> str:
    """`image` pushed into the site's own namespace of the registry (as its owner may push one)."""
    repository = f"{Settings().registry}/site_{site_id:04d}"
    name, _, digest = image.partition("@")
    built = name.rpartition(":")[0]
    api.pull(built, tag=digest)  # the builder keeps it by tag, not by the digest the registry gave it
    api.tag(api.inspect_image(f"{built}@{digest}")["Id"], repository, "db")
    for line in api.push(repository, "db", stream=True, decode=True):
        assert "error" not in line, line
    return f"{repository}:db"
