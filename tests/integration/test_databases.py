"""Site databases end to end, as Director uses them: a site event asking for a database, the
site's service handed it, and `director.databases` requests as the `director` user, on the local
stack's real PostgreSQL and MariaDB.

The module runs its own orchestrator: a retention of seconds and housekeeping every second (so a
deleted site's database is seen dumped and dropped), and a second PostgreSQL server behind a gate
the tests can close (`harness.databases.Gate`: the server "stops" for this orchestrator alone;
sites with odd ids land there). One site per kind serves every test that needs one, in order:
managed, its password reset (PostgreSQL), deleted (MySQL).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import Running, deploy, fresh_site_id, served, site_event, stack_running, write_site
from support.web import fetch

from harness.databases import (
    CLIENT_PACKAGES,
    SERVERS,
    Gate,
    connect_as,
    databases_of,
    ensure_client_packages,
    push_for_site,
    roles_of,
    wipe,
    write_database_site,
)
from orchestrator.sites.databases import Grant
from orchestrator_client import Client
from orchestrator_client.errors import MultipleStatements, QueryTimeout

RETENTION_SECONDS = 20.0  # past a delete (retire, then the service removed after its drain): kept, then dropped
MAKE_NOTES = "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(100))"


@pytest.fixture(scope="module")
async def gate() -> AsyncIterator[Gate]:
    server = SERVERS["postgres"]
    opened = Gate(server.host, server.port)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, gate: Gate) -> AsyncIterator[Running]:
    pg, my = SERVERS["postgres"], SERVERS["mysql"]
    gated = pg.model_copy(update={"name": "gated", "port": gate.port, "site_port": pg.port})
    servers = json.dumps([json.loads(s.model_dump_json()) for s in (pg, gated, my)])
    async with stack_running(
        "databases",
        tmp_path_factory.mktemp("logs"),
        database_servers=servers,
        database_retention_days=str(RETENTION_SECONDS / 86400),
        housekeeping_seconds="1",
        database_timeout_seconds="2",
        database_query_timeout_seconds="1",
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def client(stack: Running) -> AsyncIterator[Client]:
    """Director's client package, as Director: its `databases` requests go to `director.databases`."""
    url = f"amqp://director:director@127.0.0.1:5672/{stack.vhost}"
    async with await Client.connect(url) as director:
        yield director


def even_site_id() -> int:
    """A site on the real PostgreSQL server (odd ids go to the gated one)."""
    site_id = fresh_site_id()
    return site_id if site_id % 2 == 0 else fresh_site_id()


async def credentials(client: Client, site_id: int) -> Grant:
    found = await client.databases.credentials(site_id)
    return Grant(found.kind, "", "198.18.213.1", found.port, found.name, found.user, found.password)


class ClientImages:
    """The site image with psql and mariadb, built by the orchestrator from the local package
    repository once, then pushed into each further site's namespace."""

    def __init__(self, stack: Running) -> None:
        self.stack = stack
        self.built: str | None = None

    async def for_site(self, site_id: int) -> dict[str, Any]:
        if self.built is None:
            await asyncio.to_thread(ensure_client_packages)
            recipe = {"parent": "director/base:latest", "packages": list(CLIENT_PACKAGES)}
            event = site_event("site.image_requested", site_id, 1, image=recipe)
            built = await deploy(self.stack.director, self.stack.results, event, timeout=300)
            assert built.type == "site.image_built" and built.image, built
            self.built = built.image
            return {"name": built.image, "custom": True}
        return {"name": await asyncio.to_thread(push_for_site, self.stack.api, self.built, site_id), "custom": True}


@pytest.fixture(scope="module")
def images(stack: Running) -> ClientImages:
    return ClientImages(stack)


async def database_site(
    stack: Running, client: Client, images: ClientImages, kind: str
) -> tuple[int, str, dict[str, Any]]:
    """A site on the real server of its kind whose page, served through Traefik, is read from
    its database at every request; (its id, its host, its create event)."""
    site_id = even_site_id()
    host = f"db{site_id}.test.example.com"
    write_database_site(stack.sites_root, site_id)
    event = site_event("site.created", site_id, 1, domains=[host], image=await images.for_site(site_id))
    event["site"]["database"] = {"kind": kind}
    result = await deploy(stack.director, stack.results, event)
    assert result.type == "site.deployed", result
    await client.databases.query(site_id, MAKE_NOTES)
    await client.databases.query(site_id, f"INSERT INTO notes VALUES (1, 'read from the {kind} database of {site_id}')")
    await served(host, f"read from the {kind} database of {site_id}")
    return site_id, host, event


Served = tuple[int, str, dict[str, Any]]


@pytest.fixture(scope="module")
async def sites(stack: Running, client: Client, images: ClientImages) -> AsyncIterator[dict[str, Served]]:
    """One serving site per kind, shared by the tests below; their databases dropped at the end."""
    made: dict[str, Served] = {}
    try:
        for kind in ("postgres", "mysql"):
            made[kind] = await database_site(stack, client, images, kind)
        yield made
    finally:
        await wipe([site_id for site_id, _, _ in made.values()])


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
async def test_a_site_gets_its_database_and_director_manages_it(
    stack: Running, client: Client, sites: dict[str, Served], kind: str
) -> None:
    site_id, _, created = sites[kind]
    env = dict(
        item.partition("=")[::2]
        for item in stack.api.inspect_service(f"site_{site_id:04d}")["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    )
    grant = await credentials(client, site_id)
    assert env["DATABASE_URL"] == grant.url.replace(grant.host, env["DIRECTOR_DATABASE_HOST"])
    assert env["DIRECTOR_DATABASE_USER"] == grant.user and env["DIRECTOR_DATABASE_PASSWORD"] == grant.password
    await connect_as(grant)  # as a site task reaches it: the bridge address

    # The console: rows, one statement only, a timeout.
    rows = await client.databases.query(site_id, "SELECT id FROM notes")
    assert (rows.columns, rows.rows, rows.truncated) == (["id"], [[1]], False)
    with pytest.raises(MultipleStatements):
        await client.databases.query(site_id, "SELECT 1; DROP TABLE notes")
    with pytest.raises(QueryTimeout):
        await client.databases.query(site_id, "SELECT pg_sleep(5)" if kind == "postgres" else "SELECT SLEEP(5)")
    usage = await client.databases.usage(site_id)
    assert usage.bytes > 0 and usage.name == f"site_{site_id:04d}" and usage.kind == kind

    # A redelivered create makes nothing twice and keeps the password.
    before = roles_of(kind, site_id)
    again = await deploy(stack.director, stack.results, created)
    assert again.type == "site.deployed" and roles_of(kind, site_id) == before
    assert (await credentials(client, site_id)).password == grant.password

    # A dump, streamed (its sha256 and size checked by the client).
    dump = b"".join([data async for data in client.databases.dump(site_id)])
    assert dump.startswith(b"PGDMP") if kind == "postgres" else b"CREATE TABLE `notes`" in dump


async def test_a_new_password_keeps_the_site_reading_its_database(client: Client, sites: dict[str, Served]) -> None:
    site_id, host, _ = sites["postgres"]
    page = f"read from the postgres database of {site_id}"
    old = await credentials(client, site_id)
    failures, answered, resetting = [], 0, True

    async def visit() -> None:
        nonlocal answered
        while resetting:
            response = await fetch(host)
            answered += 1
            if response.status_code != 200 or page not in response.text:
                failures.append(f"{response.status_code} {response.text[:200]}")
            await asyncio.sleep(0.05)

    visitor = asyncio.create_task(visit())
    try:
        new = await client.databases.reset_password(site_id, timeout=90)
    finally:
        resetting = False
        await visitor
    assert failures == [] and answered > 10
    assert new.user != old.user and new.password != old.password
    assert (await credentials(client, site_id)).password == new.password
    with pytest.raises(Exception, match=r"(?i)password|denied|not permitted"):
        await connect_as(old)
    await connect_as(await credentials(client, site_id))
    assert page in (await fetch(host)).text


async def test_a_deleted_sites_database_is_locked_then_dumped_into_the_trash_and_dropped(
    stack: Running, client: Client, sites: dict[str, Served]
) -> None:
    site_id, _, _ = sites["mysql"]
    grant = await credentials(client, site_id)
    await client.databases.query(site_id, "CREATE TABLE kept (x INT)")
    removed = await deploy(stack.director, stack.results, site_event("site.deleted", site_id, 2))
    assert removed.type == "site.removed"
    with pytest.raises(Exception, match=r"(?i)denied|locked"):
        await connect_as(grant)
    assert databases_of("mysql", site_id) == [grant.name]  # kept through the retention

    trash = stack.sites_root / ".trash"

    def dumps() -> list[Path]:
        return [p for p in trash.glob(f"site_{site_id:04d}-*-database.sql")] if trash.is_dir() else []

    for _ in range(int(RETENTION_SECONDS * 4 + 40)):
        if dumps() and not databases_of("mysql", site_id):
            break
        await asyncio.sleep(0.5)
    assert databases_of("mysql", site_id) == [] and roles_of("mysql", site_id) == []
    [dump] = dumps()
    assert b"CREATE TABLE `kept`" in dump.read_bytes() and dump.stat().st_mode & 0o077 == 0


async def test_a_server_that_is_down_fails_the_deploy_after_retries_and_makes_nothing(
    stack: Running, gate: Gate
) -> None:
    site_id = fresh_site_id()
    if site_id % 2 == 0:
        site_id = fresh_site_id()  # an odd id: the gated server
    write_site(stack.sites_root, site_id, page=f"no db {site_id}")
    event = site_event("site.created", site_id, 1)
    event["site"]["database"] = {"kind": "postgres"}
    await gate.close()
    try:
        result = await deploy(stack.director, stack.results, event, timeout=120)
        assert result.type == "site.failed" and result.error is not None, result
        assert result.error.code == "database_unavailable"
        assert stack.api.services(filters={"name": f"site_{site_id:04d}"}) == []
        assert roles_of("postgres", site_id) == [] and databases_of("postgres", site_id) == []
    finally:
        await gate.open()
        await wipe([site_id])
