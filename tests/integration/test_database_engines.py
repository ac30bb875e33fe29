"""The two engines (`databases.postgres`, `databases.mysql`) on the local stack's real servers,
as the orchestrator's admin and as a site's login connecting through the address sites use.

Two sites' databases per kind, shared by the module (a provision costs a few tens of ms); each
test leaves them as it found them.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import time
from collections.abc import AsyncIterator

import pytest
from support import fresh_site_id, scope

from harness.databases import KINDS, SERVERS, connect_as, databases_of, engine, roles_of, superuser_sql, wipe
from orchestrator.config import DatabaseServer
from orchestrator.databases.engines import Engine, QueryLimits
from orchestrator.errors import DatabaseError, DatabaseRefused, DatabaseUnavailable
from orchestrator.sites.databases import Grant, desired_grant, new_password, other_login, with_login
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.databases import Database, DatabaseKind

LIMITS = QueryLimits(timeout_seconds=1.0, max_rows=50, max_bytes=64 * 1024)
SLEEP = {"postgres": "SELECT pg_sleep(5)", "mysql": "SELECT SLEEP(5)"}
MAKE_TABLE = "CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(100))"


async def refused(awaitable: object) -> str:
    with pytest.raises(DatabaseRefused) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value.code


@pytest.fixture(scope="module", params=KINDS)
async def two(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Engine, Grant, Grant]]:
    """An engine and two sites' databases on its server, provisioned."""
    kind = request.param
    held = engine(kind)
    grants = []
    for _ in range(2):
        site_id = fresh_site_id()
        grant = desired_grant(site_id, Database(kind=DatabaseKind(kind)), None, [SERVERS[kind]])
        assert grant is not None
        await held.provision(site_id, grant.user, grant.password, fresh=True)
        grants.append(grant)
    try:
        yield held, grants[0], grants[1]
    finally:
        await wipe(int(g.name[5:]) for g in grants)
        await held.close()


def sessions_of(grant: Grant) -> list[str]:
    """What the grant's login is running on the (MariaDB) server, as its superuser sees it."""
    sql = f"SELECT INFO FROM information_schema.PROCESSLIST WHERE USER = '{grant.user}'"
    return superuser_sql("mysql", sql).split()


def site_of(grant: Grant) -> int:
    return int(grant.name[5:])


async def test_a_redelivered_provision_makes_nothing_twice(two: tuple[Engine, Grant, Grant]) -> None:
    held, grant, _ = two
    site_id = site_of(grant)
    before = roles_of(held.kind, site_id)
    await held.provision(site_id, grant.user, grant.password, fresh=False)
    assert roles_of(held.kind, site_id) == before
    group = [grant.name] if held.kind == "postgres" else []
    assert before == sorted([*group, f"{grant.name}_a", f"{grant.name}_b"])
    assert databases_of(held.kind, site_id) == [grant.name]
    await connect_as(grant)  # the password set the first time still works
    assert [h.deployment for h in await held.held() if h.site_id == site_id] == [scope.DEPLOYMENT]
    # Another deployment sharing the server, with a site of the same id, is refused it.
    foreign = engine(held.kind, deployment="another-deployment")
    try:
        with pytest.raises(DatabaseError, match="belongs to deployment"):
            await foreign.provision(site_id, grant.user, new_password(), fresh=True)
    finally:
        await foreign.close()
    await connect_as(grant)  # and nothing of it changed


async def test_a_login_reaches_only_its_own_database_and_makes_no_roles(two: tuple[Engine, Grant, Grant]) -> None:
    held, mine, theirs = two
    await connect_as(mine)
    with pytest.raises(Exception, match=r"(?i)denied|pg_hba|permission"):
        await connect_as(mine, database=theirs.name)
    other = "postgres" if held.kind == "postgres" else "mysql"
    with pytest.raises(Exception, match=r"(?i)denied|pg_hba|permission"):
        await connect_as(mine, database=other)
    for sql in (
        "CREATE ROLE intruder" if held.kind == "postgres" else "CREATE USER intruder",
        f"CREATE DATABASE {mine.name}_x",
    ):
        code = await refused(held.query(mine, sql, LIMITS))
        assert code == ErrorCode.QUERY_FAILED, sql


async def test_the_console_runs_one_statement_within_its_bounds(two: tuple[Engine, Grant, Grant]) -> None:
    held, grant, _ = two
    made = await held.query(grant, MAKE_TABLE, LIMITS)
    try:
        assert made.columns == [] and not made.truncated
        await held.query(grant, "INSERT INTO notes VALUES (1, 'one'), (2, 'two')", LIMITS)
        result = await held.query(grant, "SELECT id, body FROM notes ORDER BY id", LIMITS)
        assert (result.columns, result.rows, result.truncated) == (["id", "body"], [[1, "one"], [2, "two"]], False)
        assert await refused(held.query(grant, "SELECT 1; DROP TABLE notes", LIMITS)) == ErrorCode.MULTIPLE_STATEMENTS
        assert (await held.query(grant, "SELECT count(*) FROM notes", LIMITS)).rows == [[2]]  # nothing dropped
        series = (
            "SELECT generate_series(1, 1000)"
            if held.kind == "postgres"
            else "SELECT seq FROM information_schema.COLLATIONS, (SELECT 1 AS seq) s"
        )
        many = await held.query(grant, series, LIMITS)
        assert many.truncated and len(many.rows) == LIMITS.max_rows
        wide = await held.query(grant, series, QueryLimits(1.0, 10_000, 1024))
        assert wide.truncated and 0 < len(wide.rows) < 1024
        assert await refused(held.query(grant, SLEEP[held.kind], LIMITS)) == ErrorCode.QUERY_TIMEOUT
        if held.kind == "mysql":  # a statement that lifts its own limit is ended all the same
            lifted = "SET STATEMENT max_statement_time=0 FOR SELECT SLEEP(30)"
            started = time.monotonic()
            assert await refused(held.query(grant, lifted, LIMITS)) == ErrorCode.QUERY_TIMEOUT
            assert time.monotonic() - started < LIMITS.timeout_seconds + 3
            for _ in range(20):  # a killed session takes a moment to leave the list
                if not sessions_of(grant):
                    break
                await asyncio.sleep(0.1)
            assert sessions_of(grant) == []
        assert await refused(held.query(grant, "SELEC nothing", LIMITS)) == ErrorCode.QUERY_FAILED
    finally:
        await held.query(grant, "DROP TABLE IF EXISTS notes", LIMITS)


async def test_a_new_password_moves_to_the_other_login(two: tuple[Engine, Grant, Grant]) -> None:
    held, grant, _ = two
    site_id = site_of(grant)
    await held.query(grant, MAKE_TABLE, LIMITS)
    moved = with_login(grant, other_login(site_id, grant.user), new_password())
    await held.enable(site_id, moved.user, moved.password)
    await connect_as(grant)  # both work while the site's tasks move over
    await connect_as(moved)
    await held.query(moved, "INSERT INTO notes VALUES (3, 'made by the first, written by the second')", LIMITS)
    await held.lock(site_id, grant.user)
    with pytest.raises(Exception, match=r"(?i)denied|password|locked|not permitted"):
        await connect_as(grant)
    assert (await held.query(moved, "SELECT id FROM notes", LIMITS)).rows == [[3]]
    await held.query(moved, "DROP TABLE notes", LIMITS)
    # An update that read the site's grant before the reset never brings the old password back.
    await held.provision(site_id, grant.user, grant.password, fresh=False)
    with pytest.raises(Exception, match=r"(?i)denied|password|locked|not permitted"):
        await connect_as(grant)
    await connect_as(moved)
    # A fresh grant (no service holds one) takes the database over: the other login is locked.
    await held.provision(site_id, grant.user, grant.password, fresh=True)
    await connect_as(grant)
    with pytest.raises(Exception, match=r"(?i)denied|password|locked|not permitted"):
        await connect_as(moved)


async def test_retired_locked_then_had_back_then_dumped_and_dropped(two: tuple[Engine, Grant, Grant]) -> None:
    held, _, grant = two
    site_id = site_of(grant)
    await held.query(grant, MAKE_TABLE, LIMITS)
    await held.query(grant, "INSERT INTO notes VALUES (7, 'kept')", LIMITS)
    # Marked in the future: no housekeeping of a test orchestrator beside this one drops it.
    first = float(int(time.time()) + 3600)
    await held.retire(site_id, first)
    await held.retire(site_id, first + 60)  # the first retirement counts
    assert [h.retired_at for h in await held.held() if h.site_id == site_id] == [first]
    with pytest.raises(Exception, match=r"(?i)denied|password|locked|not permitted"):
        await connect_as(grant)

    dump = held.dump_command(site_id)
    run = functools.partial(subprocess.run, dump.argv, env=dump.env, capture_output=True, timeout=60, check=False)
    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert b"kept" in out or held.kind == "postgres"  # pg_custom compresses the data
    assert out.startswith(b"PGDMP") if held.kind == "postgres" else b"CREATE TABLE `notes`" in out

    await held.provision(site_id, grant.user, grant.password, fresh=True)  # asked for again: back as it was
    assert [h.retired_at for h in await held.held() if h.site_id == site_id] == [None]
    assert (await held.query(grant, "SELECT body FROM notes", LIMITS)).rows == [["kept"]]
    usage = await held.usage(site_id)
    assert usage is not None and usage > 0

    await held.drop(site_id)
    await held.drop(site_id)  # nothing there: nothing to do
    assert roles_of(held.kind, site_id) == [] and databases_of(held.kind, site_id) == []
    assert await held.usage(site_id) is None
    await held.provision(site_id, grant.user, grant.password, fresh=True)  # the fixture's again


@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_that_does_not_answer_is_unavailable(kind: str) -> None:
    nowhere = DatabaseServer(
        name="nowhere", kind=kind, host="127.0.0.1", port=9, admin_password_file=SERVERS[kind].admin_password_file
    )  # type: ignore[arg-type]
    held = engine(kind, nowhere, timeout=2)
    try:
        with pytest.raises(DatabaseUnavailable):
            await held.provision(fresh_site_id(), "site_0001_a", "x", fresh=True)
    finally:
        await held.close()
