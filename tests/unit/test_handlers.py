"""The handlers' decisions on in-memory fakes: stale events, tombstones, redeliveries, conflicts,
policy refusals and the order of a delete. No broker, no Docker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import FakeSiteDirs, FakeSwarm

from orchestrator.config import Settings
from orchestrator.errors import DomainConflict, ImageNotAllowed, ServiceFailed, UnsafePath
from orchestrator.events import InboundEvent, SiteCreated, SiteDeleted, SiteUpdated
from orchestrator.handlers import Context, dispatch

NAME = "site_0001"


@pytest.fixture
def swarm() -> FakeSwarm:
    return FakeSwarm()


@pytest.fixture
def dirs() -> FakeSiteDirs:
    return FakeSiteDirs()


@pytest.fixture
def ctx(settings: Settings, swarm: FakeSwarm, dirs: FakeSiteDirs) -> Context:
    return Context(settings=settings, swarm=swarm, sitedirs=dirs)


@pytest.fixture
def upsert(site_data: Callable[..., dict[str, Any]]) -> Callable[..., InboundEvent]:
    def make(version: int, type_: str = "site.updated", **site: Any) -> InboundEvent:
        common = {"event_id": uuid.uuid4(), "occurred_at": datetime.now(UTC), "version": version}
        model = SiteCreated if type_ == "site.created" else SiteUpdated
        return model.model_validate({**common, "type": type_, "site": site_data(**site)})

    return make


def delete(version: int, site_id: int = 1) -> SiteDeleted:
    return SiteDeleted(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        version=version,
        type="site.deleted",
        site={"id": site_id},  # type: ignore[arg-type]
    )


async def test_a_created_site_gets_its_directory_and_a_service(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., InboundEvent]
) -> None:
    result = await dispatch(upsert(1, "site.created"), ctx)

    assert result.type == "site.deployed" and result.applied_version == 1
    assert result.service is not None and result.service.name == NAME
    assert NAME in swarm.services and NAME in dirs.existing
    assert swarm.calls.index(f"create {NAME}") < swarm.calls.index(f"wait_converged {NAME}")


async def test_a_redelivered_event_changes_nothing(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., InboundEvent]
) -> None:
    event = upsert(1, "site.created")
    await dispatch(event, ctx)
    swarm.calls.clear()

    result = await dispatch(event, ctx)

    assert result.type == "site.deployed"
    assert not [c for c in swarm.calls if c.startswith(("create", "update"))], swarm.calls


async def test_an_update_with_a_new_spec_updates_the_service(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., InboundEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)

    result = await dispatch(upsert(2, domains=["new.example.com"]), ctx)

    assert result.type == "site.deployed" and result.applied_version == 2
    assert f"update {NAME}" in swarm.calls
    assert swarm.services[NAME].domains == ("new.example.com",)


async def test_an_older_event_is_stale_and_changes_nothing(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., InboundEvent]
) -> None:
    await dispatch(upsert(5, "site.created"), ctx)
    swarm.calls.clear()

    result = await dispatch(upsert(3, domains=["old.example.com"]), ctx)

    assert result.type == "site.stale" and result.applied_version == 5
    assert swarm.services[NAME].site_version == 5
    assert not [c for c in swarm.calls if c.startswith(("create", "update"))]


async def test_a_delete_writes_its_tombstone_before_removing_the_service(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., InboundEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)

    result = await dispatch(delete(2), ctx)

    assert result.type == "site.removed"
    assert swarm.calls.index("set_tombstone 1 v2") < swarm.calls.index(f"remove {NAME}")
    assert NAME not in swarm.services and dirs.trashed == [NAME]


async def test_a_late_update_older_than_the_delete_does_not_resurrect_the_site(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., InboundEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    await dispatch(delete(3), ctx)

    result = await dispatch(upsert(2), ctx)

    assert result.type == "site.stale" and result.applied_version == 3
    assert NAME not in swarm.services


async def test_a_newer_create_after_a_delete_recreates_the_site_and_clears_the_tombstone(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., InboundEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    await dispatch(delete(2), ctx)

    result = await dispatch(upsert(3, "site.created"), ctx)

    assert result.type == "site.deployed" and result.applied_version == 3
    assert NAME in swarm.services and 1 not in swarm.tombstones


async def test_deleting_a_site_that_never_existed_succeeds_and_remembers_the_delete(
    ctx: Context, swarm: FakeSwarm
) -> None:
    result = await dispatch(delete(4), ctx)

    assert result.type == "site.removed"
    assert swarm.tombstones == {1: 4}
    assert not [c for c in swarm.calls if c.startswith("remove")]


async def test_a_domain_routed_to_another_site_is_a_conflict_and_nothing_is_created(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., InboundEvent]
) -> None:
    await dispatch(upsert(1, "site.created", id=2, domains=["taken.example.com"]), ctx)

    with pytest.raises(DomainConflict, match=r"taken\.example\.com"):
        await dispatch(upsert(1, "site.created", domains=["TAKEN.example.com"]), ctx)

    assert NAME not in swarm.services and NAME not in dirs.existing


async def test_policy_refuses_before_anything_is_created(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., InboundEvent]
) -> None:
    with pytest.raises(ImageNotAllowed):
        await dispatch(upsert(1, "site.created", image={"name": "busybox:latest", "custom": False}), ctx)

    assert not swarm.services and not dirs.existing


async def test_an_unsafe_directory_refuses_the_delete_before_removing_anything(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., InboundEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    dirs.unsafe.add(NAME)

    with pytest.raises(UnsafePath):
        await dispatch(delete(2), ctx)

    assert NAME in swarm.services and 1 not in swarm.tombstones


async def test_an_update_out_of_sequence_is_reloaded_and_retried(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., InboundEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    swarm.conflicts = 2

    result = await dispatch(upsert(2, domains=["again.example.com"]), ctx)

    assert result.type == "site.deployed" and swarm.services[NAME].site_version == 2
    assert swarm.calls.count(f"update {NAME}") == 3


async def test_a_service_that_does_not_converge_fails_the_event(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., InboundEvent]
) -> None:
    swarm.converge_error = ServiceFailed("site_0001 did not start: no such image")

    with pytest.raises(ServiceFailed, match="no such image"):
        await dispatch(upsert(1, "site.created"), ctx)
