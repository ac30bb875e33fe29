"""Site databases without a server: the grant a spec asks for and how the site gets it, the site
handlers' order on the in-memory servers (tests/unit/fakes.py), the console's bounds, and the
password forms the engines hand the servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import FakeDatabases, FakeEngine, FakeRoutes, FakeSiteDirs, FakeSwarm

from orchestrator.config import DatabaseServer, Settings
from orchestrator.databases.drift import database_drift
from orchestrator.databases.dumps import Dumps
from orchestrator.databases.engines import Held, Holdings, Marker, holdings
from orchestrator.databases.mysql import native_hash
from orchestrator.databases.postgres import scram_verifier
from orchestrator.databases.requests import SiteDatabases
from orchestrator.databases.rows import RowBudget, cell, mentions_more_statements, read_rows
from orchestrator.databases.servers import Databases
from orchestrator.errors import (
    DatabaseError,
    DatabaseKindChange,
    DatabaseNotOffered,
    DatabaseRefused,
    DatabaseUnavailable,
)
from orchestrator.labels import DATABASE
from orchestrator.sites.databases import Grant, desired_grant, grant_of, logins, other_login, server_for
from orchestrator.sites.handlers import Context, dispatch
from orchestrator.sites.locks import KeyedLocks
from orchestrator.sites.protocols import Rollout
from orchestrator.sites.rollout import Broken, Ready
from orchestrator.sites.service import Service
from orchestrator.sites.spec import with_database
from orchestrator_contract.databases import Database, DatabaseKind
from orchestrator_contract.sites import SiteCreated, SiteDeleted, SiteEvent, SiteUpdated

NAME = "site_0001"
PG = DatabaseServer(name="pg1", kind="postgres", host="127.0.0.1", port=5432, admin_password_file="/x")  # type: ignore[arg-type]
PG2 = DatabaseServer(name="pg2", kind="postgres", host="10.0.0.2", port=5432, admin_password_file="/x", site_host="db")  # type: ignore[arg-type]
MY = DatabaseServer(name="my1", kind="mysql", host="127.0.0.1", port=3306, admin_password_file="/x")  # type: ignore[arg-type]


# --- the grant ---------------------------------------------------------------------------------


def test_a_new_grant_names_the_site_and_its_first_login_with_a_strong_password() -> None:
    grant = desired_grant(42, Database(kind=DatabaseKind.POSTGRES), None, [PG])
    assert grant is not None
    assert (grant.name, grant.user, grant.server, grant.host, grant.port) == (
        "site_0042",
        "site_0042_a",
        "pg1",
        "127.0.0.1",
        5432,
    )
    assert (
        len(grant.password) >= 32
        and grant.password != desired_grant(42, Database(kind="postgres"), None, [PG]).password
    )  # type: ignore[union-attr,arg-type]
    assert grant.password not in repr(grant)
    env = grant.env()
    assert env["DATABASE_URL"] == f"postgresql://site_0042_a:{grant.password}@127.0.0.1:5432/site_0042"
    assert env["DIRECTOR_DATABASE_PASSWORD"] == grant.password and env["DIRECTOR_DATABASE_NAME"] == "site_0042"
    assert grant_of({DATABASE: grant.label}, env) == grant


def test_a_site_keeps_its_grant_and_its_server_and_never_changes_kind() -> None:
    held = desired_grant(7, Database(kind=DatabaseKind.MYSQL), None, [MY])
    assert held is not None and held.url.startswith("mysql://site_0007_a:")
    assert desired_grant(7, Database(kind=DatabaseKind.MYSQL), held, [MY]) is held
    assert desired_grant(7, None, held, [MY]) is None
    with pytest.raises(DatabaseKindChange):
        desired_grant(7, Database(kind=DatabaseKind.POSTGRES), held, [MY, PG])
    with pytest.raises(DatabaseNotOffered):
        desired_grant(7, Database(kind=DatabaseKind.POSTGRES), None, [MY])


def test_servers_of_a_kind_share_new_sites_by_id_and_sites_reach_their_own_address() -> None:
    assert {server_for(DatabaseKind.POSTGRES, i, [PG, MY, PG2]).name for i in range(4)} == {"pg1", "pg2"}
    assert server_for(DatabaseKind.POSTGRES, 5, [PG, PG2]) == server_for(DatabaseKind.POSTGRES, 5, [PG, PG2])
    grant = desired_grant(1, Database(kind=DatabaseKind.POSTGRES), None, [PG, PG2])
    assert grant is not None and (grant.server, grant.host) == ("pg2", "db")


def test_the_other_login_alternates() -> None:
    first, second = logins(3)
    assert (other_login(3, first), other_login(3, second)) == (second, first)


def test_a_site_may_not_set_the_database_variables() -> None:
    base = {"id": 1, "name": "s", "kind": "dynamic", "domains": ["a.example.com"]}
    with pytest.raises(ValueError, match="reserved"):
        SiteUpdated.model_validate(_event(2, {**base, "env": {"DIRECTOR_DATABASE_PASSWORD": "x"}}))
    with pytest.raises(ValueError, match="DATABASE_URL"):
        SiteUpdated.model_validate(_event(2, {**base, "env": {"DATABASE_URL": "x"}, "database": {"kind": "mysql"}}))
    SiteUpdated.model_validate(_event(2, {**base, "env": {"DATABASE_URL": "postgres://elsewhere/db"}}))  # no database


def _event(version: int, site: dict[str, Any], type_: str = "site.updated") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC).isoformat(), "version": version,
            "type": type_, "site": site}  # fmt: skip


# --- the handlers, on in-memory servers ------------------------------------------------------------


@pytest.fixture
def databases() -> FakeDatabases:
    return FakeDatabases()


@pytest.fixture
def swarm() -> FakeSwarm:
    return FakeSwarm()


@pytest.fixture
def ctx(swarm: FakeSwarm, databases: FakeDatabases) -> Context:
    settings = Settings(database_servers=[PG, MY])
    dirs = FakeSiteDirs(with_run_script={NAME})
    return Context(settings=settings, swarm=swarm, sitedirs=dirs, routes=FakeRoutes(), databases=databases)


@pytest.fixture
def event(site_data: Callable[..., dict[str, Any]]) -> Callable[..., SiteEvent]:
    def make(version: int, type_: str = "site.updated", **site: Any) -> SiteEvent:
        model = SiteCreated if type_ == "site.created" else SiteUpdated
        return model.model_validate(_event(version, site_data(**site), type_))

    return make


async def test_the_database_is_made_before_the_service_and_handed_to_it(
    ctx: Context, swarm: FakeSwarm, databases: FakeDatabases, event: Callable[..., SiteEvent]
) -> None:
    result = await dispatch(event(1, "site.created", database={"kind": "postgres"}), ctx)
    assert result.type == "site.deployed"
    spec = swarm.specs[NAME]
    held = databases.held[1]
    assert spec.env["DIRECTOR_DATABASE_USER"] == held["user"] == "site_0001_a"
    assert spec.env["DIRECTOR_DATABASE_PASSWORD"] == held["password"]
    assert spec.labels[DATABASE] == "postgres:pg1"
    assert held["password"] not in result.model_dump_json()  # never in a result event
    order = [*databases.calls, *swarm.calls]
    assert databases.calls == ["provision site_0001 site_0001_a fresh"] and f"create {NAME}" in order


async def test_a_redelivered_create_and_an_update_keep_the_one_password(
    ctx: Context, swarm: FakeSwarm, databases: FakeDatabases, event: Callable[..., SiteEvent]
) -> None:
    created = event(1, "site.created", database={"kind": "mysql"})
    await dispatch(created, ctx)
    password = swarm.specs[NAME].env["DIRECTOR_DATABASE_PASSWORD"]
    await dispatch(created, ctx)  # a redelivery: nothing to do
    assert databases.calls == ["provision site_0001 site_0001_a fresh"]
    await dispatch(event(2, name="renamed", database={"kind": "mysql"}), ctx)
    assert swarm.specs[NAME].env["DIRECTOR_DATABASE_PASSWORD"] == password == databases.held[1]["password"]
    # The grant the service holds is only completed: a reset may have moved the site meanwhile.
    assert databases.calls[-1] == "provision site_0001 site_0001_a"


async def test_a_change_of_kind_is_refused_and_changes_nothing(
    ctx: Context, swarm: FakeSwarm, databases: FakeDatabases, event: Callable[..., SiteEvent]
) -> None:
    await dispatch(event(1, "site.created", database={"kind": "postgres"}), ctx)
    before = swarm.specs[NAME]
    with pytest.raises(DatabaseKindChange) as caught:
        await dispatch(event(2, database={"kind": "mysql"}), ctx)
    assert caught.value.code == "database_kind_change"
    assert swarm.specs[NAME] is before and len(databases.calls) == 1


async def test_a_removed_database_is_retired_before_the_service_lets_go_of_it(
    ctx: Context, swarm: FakeSwarm, databases: FakeDatabases, event: Callable[..., SiteEvent]
) -> None:
    await dispatch(event(1, "site.created", database={"kind": "postgres"}), ctx)
    await dispatch(event(2, database=None), ctx)
    assert databases.held[1]["retired"] is True
    assert "DATABASE_URL" not in swarm.specs[NAME].env and DATABASE not in swarm.specs[NAME].labels
    # Asked for again: the same database, a fresh password.
    await dispatch(event(3, database={"kind": "postgres"}), ctx)
    assert databases.held[1]["retired"] is False
    assert databases.held[1]["password"] == swarm.specs[NAME].env["DIRECTOR_DATABASE_PASSWORD"]


async def test_a_deleted_sites_database_is_retired_first(
    ctx: Context, swarm: FakeSwarm, databases: FakeDatabases, event: Callable[..., SiteEvent]
) -> None:
    await dispatch(event(1, "site.created", database={"kind": "mysql"}), ctx)
    deleted = SiteDeleted.model_validate(_event(2, {"id": 1}, "site.deleted"))
    databases.down = 1
    with pytest.raises(DatabaseUnavailable):
        await dispatch(deleted, ctx)
    assert NAME in swarm.services  # nothing removed while the database could not be locked
    await dispatch(deleted, ctx)
    assert databases.held[1]["retired"] is True and NAME not in swarm.services


async def test_a_server_that_does_not_answer_makes_no_service(
    ctx: Context, swarm: FakeSwarm, databases: FakeDatabases, event: Callable[..., SiteEvent]
) -> None:
    databases.down = 1
    with pytest.raises(DatabaseUnavailable) as caught:
        await dispatch(event(1, "site.created", database={"kind": "postgres"}), ctx)
    assert caught.value.retryable and NAME not in swarm.services and databases.held == {}


def test_a_password_reset_spec_is_fingerprinted_as_a_deploy_of_it(
    ctx: Context, event: Callable[..., SiteEvent]
) -> None:
    from dataclasses import replace

    from orchestrator.sites.admission import admit
    from orchestrator.sites.spec import desired_service

    site = event(1, database={"kind": "postgres"}).site  # type: ignore[union-attr]
    admitted = admit(site, ctx.admission)
    first = admitted.database
    assert first is not None and first.server == PG.name
    moved = Grant(first.kind, first.server, first.host, first.port, first.name, "site_0001_b", "new")
    deployed = desired_service(admitted, 1, ctx.runtime, ctx.sitedirs.path(NAME))
    expected = desired_service(replace(admitted, database=moved), 1, ctx.runtime, ctx.sitedirs.path(NAME))
    assert with_database(deployed, moved) == expected


# --- a password reset ------------------------------------------------------------------------------


@pytest.fixture
async def resets(ctx: Context, swarm: FakeSwarm, event: Callable[..., SiteEvent]) -> tuple[SiteDatabases, FakeEngine]:
    """The site with a database on `pg1`, and what resets its password."""
    await dispatch(event(1, "site.created", database={"kind": "postgres"}), ctx)
    held = grant_of(swarm.services[NAME].labels, swarm.services[NAME].env)
    assert held is not None
    engine = FakeEngine(PG, {held.user: held.password})
    dumps = Dumps(_never_sent, max_dumps=1, max_bytes=0, chunk_bytes=1024)
    sites = SiteDatabases(ctx.settings, Databases([engine]), swarm, dumps, KeyedLocks(), ctx.sitedirs.has_run_script)  # type: ignore[list-item]
    return sites, engine


async def _never_sent(reply_to: str, correlation_id: str, body: bytes) -> bool:
    raise AssertionError("nothing is streamed here")


async def test_a_reset_moves_the_site_to_its_other_login_then_locks_the_old_one(
    resets: tuple[SiteDatabases, FakeEngine], swarm: FakeSwarm
) -> None:
    sites, engine = resets
    swarm.calls.clear()
    swarm.conflicts = 1  # a site update got in first: the reset reads the service again
    moved = await sites.reset_password(1)
    assert (moved.user, engine.logins["site_0001_b"]) == ("site_0001_b", moved.password)
    assert engine.logins["site_0001_a"] is None  # locked, its sessions ended
    assert engine.calls == ["enable site_0001_b", "lock site_0001_a"]  # enabled once, for both tries
    assert swarm.specs[NAME].env["DIRECTOR_DATABASE_PASSWORD"] == moved.password
    # The old login is locked only once the replaced task stopped (it serves through its drain).
    assert [c for c in swarm.calls if c.startswith(("update", "converge", "wait_replaced"))] == [
        f"update {NAME}", f"update {NAME}", f"converge {NAME}", f"wait_replaced {NAME}",
    ]  # fmt: skip
    assert swarm.rollouts[-1].replicas == 1  # health-gated like a deploy


async def test_a_reset_whose_site_never_comes_up_keeps_the_old_login_and_locks_the_new_one(
    resets: tuple[SiteDatabases, FakeEngine], swarm: FakeSwarm
) -> None:
    sites, engine = resets
    before = swarm.services[NAME], swarm.specs[NAME]

    async def rolled_back(service: Service, rollout: Rollout) -> Ready | Broken:
        swarm.services[NAME], swarm.specs[NAME] = before  # Swarm rolls back to the old spec
        return Broken("run_script_failed", "the task exited")

    swarm.converge = rolled_back  # type: ignore[method-assign]
    with pytest.raises(DatabaseRefused) as caught:
        await sites.reset_password(1)
    assert caught.value.code == "service_failed"
    assert engine.logins["site_0001_b"] is None and engine.logins["site_0001_a"] is not None
    assert engine.calls == ["enable site_0001_b", "lock site_0001_b"]


# --- drift ---------------------------------------------------------------------------------------


def _service(site_id: int, grant: Grant | None) -> Service:
    labels, env = ({DATABASE: grant.label}, grant.env()) if grant else ({}, {})
    return Service(f"id{site_id}", f"site_{site_id:04d}", 1, labels, 1, env=env)


def test_drift_names_a_database_no_site_holds_and_a_site_whose_database_is_gone() -> None:
    kept, lost = (desired_grant(i, Database(kind=DatabaseKind.POSTGRES), None, [PG]) for i in (1, 2))
    assert kept is not None and lost is not None
    services = [_service(1, kept), _service(2, lost), _service(3, None)]
    held = [
        Held(1, True, 8_000_000, deployment="here"),
        Held(2, False),  # its logins are there, its database is not
        Held(4, True, 100, deployment="here"),  # nobody's
        Held(5, True, 100, retired_at=1.0, deployment="here"),  # waits out its retention: not drift
        Held(6, False),  # logins left by a provision cut short: whose, nothing says
        Held(7, True, 100, deployment="elsewhere"),  # another deployment's on a shared server
    ]
    found = database_drift(services, [Holdings(PG, held), Holdings(MY, error="connection refused")], "here")
    assert [(d.kind, d.subject) for d in found.drift] == [
        ("orphan_database", "pg1/site_0004"),
        ("missing_database", "site_0002"),
    ]
    assert found.sizes == {"site_0001": 8_000_000}
    assert found.warnings == ["database server my1 did not answer: connection refused"]


def test_nothing_is_said_of_the_databases_of_a_server_that_did_not_answer() -> None:
    grant = desired_grant(1, Database(kind=DatabaseKind.MYSQL), None, [MY])
    found = database_drift([_service(1, grant)], [Holdings(MY, error="timeout")], "here")
    assert found.drift == [] and found.sizes == {} and len(found.warnings) == 1
    elsewhere = database_drift([_service(1, grant)], [Holdings(PG, [])], "here")
    assert elsewhere.drift == [] and elsewhere.warnings == [
        "site_0001's database server my1 is not in DATABASE_SERVERS"
    ]


# --- the console's bounds and the password forms ---------------------------------------------------


def test_rows_stop_at_their_count_or_their_bytes() -> None:
    budget = RowBudget(max_rows=2, max_bytes=1000)
    assert budget.take([1]) and budget.take([2]) and not budget.take([3]) and budget.spent
    small = RowBudget(max_rows=100, max_bytes=20)
    assert small.take(["abc"]) and not small.take(["x" * 30]) and small.spent


async def test_rows_are_read_in_batches_until_the_cursor_ends_or_the_budget_is_spent() -> None:
    asked: list[int] = []

    def cursor(rows: int) -> Callable[[int], Any]:
        left = [(n, f"note {n}", b"\x01") for n in range(rows)]

        async def fetch(n: int) -> list[tuple[Any, ...]]:
            asked.append(n)
            batch, left[:] = left[:n], left[n:]
            return batch

        return fetch

    every = await read_rows(["id", "body", "raw"], cursor(250), 1000, 1_000_000)
    assert (len(every.rows), every.truncated, every.status) == (250, False, "250 rows")
    assert every.rows[0] == [0, "note 0", "\\x01"] and asked == [100, 100, 100, 100]
    asked.clear()
    cut = await read_rows(["id", "body", "raw"], cursor(250), 3, 1_000_000)
    assert (len(cut.rows), cut.truncated, cut.status) == (3, True, "3 rows (more left out)") and asked == [4]
    small = await read_rows(["id", "body", "raw"], cursor(250), 1000, 100)
    assert small.truncated and 0 < len(small.rows) < 10


def test_what_a_server_holds_is_read_per_site_from_its_databases_and_logins() -> None:
    found = holdings(
        [("site_0007", "director:here:retired:1700000000", 8192), ("site_0003", "director:here", 100),
         ("site_0009", None, 0)],
        ["site_0003", "site_0003_a", "site_0003_b", "site_0005_a", "site_0007_b"],
    )  # fmt: skip
    assert found == [
        Held(3, True, 100, None, "here"),
        Held(5, False),  # logins without their database: a provision cut short
        Held(7, True, 8192, 1700000000.0, "here"),
        Held(9, True, 0, None, None),  # not marked: nobody's
    ]


def test_a_database_dropped_while_it_was_listed_is_not_held() -> None:
    """PostgreSQL lists it, then gives its size as NULL: it is gone, its logins may not be yet."""
    found = holdings([("site_0004", "director:here:retired:1700000000", None)], ["site_0004_a"])
    assert found == [Held(4, False)]


def test_cells_are_json() -> None:
    import datetime as dt
    import decimal

    assert [cell(v) for v in (None, True, 3, 1.5, "s")] == [None, True, 3, 1.5, "s"]
    assert cell(b"\x01\xff") == "\\x01ff" and cell(decimal.Decimal("1.50")) == "1.50"
    assert cell(float("nan")) == "nan" and cell(dt.date(2024, 1, 2)) == "2024-01-02"


@pytest.mark.parametrize(
    ("sql", "several"),
    [("SELECT 1; SELECT 2", True), ("SELECT ';' ", False), ("SELECT 1;", False), ("SELEC 1 -- ; x", False)],
)
def test_a_second_statement_is_told_from_a_mere_syntax_error(sql: str, several: bool) -> None:
    assert mentions_more_statements(sql, syntax_error=True) is several
    assert mentions_more_statements(sql, syntax_error=False) is False


def test_postgres_gets_a_scram_verifier_that_proves_the_password() -> None:
    salt = b"0123456789abcdef"
    verifier = scram_verifier("pencil", salt, 4096)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    assert (method, iterations_salt) == ("SCRAM-SHA-256", f"4096:{base64.b64encode(salt).decode()}")
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert stored == hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    assert server == hmac.digest(salted, b"Server Key", "sha256")
    assert "pencil" not in verifier


def test_mysql_gets_the_native_hash() -> None:
    # MySQL's documented example: PASSWORD('mypass').
    assert native_hash("mypass") == "*6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4"


def test_a_database_is_marked_with_its_deployment_and_its_retirement() -> None:
    assert Marker.of(Marker("here").comment()) == Marker("here")
    assert Marker.of(Marker("here", 1700000000.5).comment()) == Marker("here", 1700000000.0)
    assert Marker.of(None) == Marker.of("a comment of the site's own") == Marker(None)
    Marker("here").refuse_if_foreign("site_0001", PG, "here")
    Marker(None).refuse_if_foreign("site_0001", PG, "here")  # not marked yet: a provision cut short
    with pytest.raises(DatabaseError, match="belongs to deployment 'elsewhere'"):
        Marker("elsewhere").refuse_if_foreign("site_0001", PG, "here")
