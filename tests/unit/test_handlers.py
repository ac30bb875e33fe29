"""The handlers' decisions on in-memory fakes: stale events, tombstones, redeliveries, conflicts,
policy refusals and the order of a delete. No broker, no Docker."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from fakes import SERVER, FakeRoutes, FakeSiteDirs, FakeSwarm

from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import Completed, Received
from orchestrator.config import Settings
from orchestrator.errors import (
    DomainConflict,
    ImageNotAllowed,
    NotFound,
    NotRouted,
    ServiceFailed,
    SiteNotServing,
    UnsafePath,
)
from orchestrator.labels import FINGERPRINT, STABLE_GATE, VERSION
from orchestrator.sites.admission import Admitted
from orchestrator.sites.handlers import Apply, Context, Stale, Unchanged, decide_upsert, dispatch
from orchestrator.sites.memo import Fingerprints
from orchestrator.sites.processor import SiteEvents
from orchestrator.sites.rollout import Broken
from orchestrator.sites.service import Service, ServiceSpec
from orchestrator.swarm.cache import SwarmCache, VerifiedRoutes
from orchestrator_contract.certificates import PendingDomain, ServedDomain, SiteTls
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.sites import SiteCreated, SiteDeleted, SiteEvent, SiteRestartRequested, SiteUpdated

NAME = "site_0001"


@pytest.fixture
def swarm() -> FakeSwarm:
    return FakeSwarm()


@pytest.fixture
def dirs() -> FakeSiteDirs:
    return FakeSiteDirs(with_run_script={NAME, "site_0002", "site_0003"})


@pytest.fixture
def routes() -> FakeRoutes:
    return FakeRoutes()


@pytest.fixture
def settings() -> Settings:
    return Settings(domain_wait_seconds=0.3, allow_wildcard_domains=True)


@pytest.fixture
def ctx(settings: Settings, swarm: FakeSwarm, dirs: FakeSiteDirs, routes: FakeRoutes) -> Context:
    return Context(settings=settings, swarm=swarm, sitedirs=dirs, routes=routes)


@pytest.fixture
def upsert(site_data: Callable[..., dict[str, Any]]) -> Callable[..., SiteEvent]:
    def make(version: int, type_: str = "site.updated", **site: Any) -> SiteEvent:
        common = {"event_id": uuid.uuid4(), "occurred_at": datetime.now(UTC), "version": version}
        model = SiteCreated if type_ == "site.created" else SiteUpdated
        return model.model_validate({**common, "type": type_, "site": site_data(**site)})

    return make


def restart(version: int, site_id: int = 1) -> SiteRestartRequested:
    return SiteRestartRequested(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        version=version,
        type="site.restart_requested",
        site={"id": site_id},  # type: ignore[arg-type]
    )


def delete(version: int, site_id: int = 1) -> SiteDeleted:
    return SiteDeleted(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        version=version,
        type="site.deleted",
        site={"id": site_id},  # type: ignore[arg-type]
    )


async def test_a_created_site_gets_its_directory_and_a_service(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., SiteEvent]
) -> None:
    result = await dispatch(upsert(1, "site.created"), ctx)

    assert result.type == "site.deployed" and result.applied_version == 1
    assert result.service is not None and result.service.name == NAME
    assert NAME in swarm.services and dirs.existing[NAME] == 1_000_000_001  # owned by the site's own uid
    assert swarm.calls.index(f"create {NAME}") < swarm.calls.index(f"converge {NAME}")


async def test_a_redelivered_event_of_an_answering_site_costs_one_docker_call(
    ctx: Context, swarm: FakeSwarm, routes: FakeRoutes, upsert: Callable[..., SiteEvent]
) -> None:
    event = upsert(1, "site.created")
    await dispatch(event, ctx)
    swarm.calls.clear()

    result = await dispatch(event, ctx)

    assert result.type == "site.deployed" and result.probe is not None
    assert swarm.calls == [f"get {NAME}"]
    assert routes.verified[-1] == (NAME, "a.example.com", None)  # still answered through Traefik


async def test_a_redelivery_soon_after_reuses_the_verification_while_nothing_happened(
    ctx: Context, swarm: FakeSwarm, routes: FakeRoutes, upsert: Callable[..., SiteEvent]
) -> None:
    stream = threading.Event()
    stream.set()
    ctx = replace(ctx, verified=VerifiedRoutes(SwarmCache(stream), 30))
    event = upsert(1, "site.created")
    await dispatch(event, ctx)
    await dispatch(event, ctx)  # the first look at the settled service verifies it once more
    swarm.calls.clear()
    checks = len(routes.verified)

    result = await dispatch(event, ctx)

    assert result.type == "site.deployed" and result.probe is not None
    assert swarm.calls == [f"get {NAME}"] and len(routes.verified) == checks


async def test_an_update_with_a_new_spec_updates_the_service(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)

    result = await dispatch(upsert(2, domains=["new.example.com"]), ctx)

    assert result.type == "site.deployed" and result.applied_version == 2
    assert f"update {NAME}" in swarm.calls
    assert swarm.services[NAME].domains == ("new.example.com",)


async def test_a_rollout_with_nothing_older_serving_watches_the_window_and_an_update_is_held_back(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    """A new site's tasks pass their health check at the first answer (Traefik finds them while
    the window runs) and the rollout waits out the window itself; an update of a serving site is
    held back by its tasks' own window, while the old task serves."""
    await dispatch(upsert(1, "site.created"), ctx)
    assert swarm.services[NAME].labels[STABLE_GATE] == "0"
    assert swarm.rollouts[-1].watch_seconds == ctx.settings.stable_seconds

    await dispatch(upsert(2, env={"RELEASE": "2"}), ctx)
    assert swarm.services[NAME].labels[STABLE_GATE] == "1"
    assert swarm.rollouts[-1].watch_seconds is None


async def test_an_older_event_is_stale_and_changes_nothing(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(5, "site.created"), ctx)
    swarm.calls.clear()

    result = await dispatch(upsert(3, domains=["old.example.com"]), ctx)

    assert result.type == "site.stale" and result.applied_version == 5
    assert swarm.services[NAME].site_version == 5
    assert not [c for c in swarm.calls if c.startswith(("create", "update"))]


async def test_a_delete_writes_its_tombstone_before_removing_the_service(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)

    result = await dispatch(delete(2), ctx)

    assert result.type == "site.removed"
    assert swarm.calls.index("set_tombstone 1 v2") < swarm.calls.index(f"remove {NAME}")
    assert NAME not in swarm.services and dirs.trashed == [NAME]


async def test_a_delete_closes_the_sites_sessions_after_its_service_and_before_its_files_move(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    closed: list[str] = []

    class Sessions:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        async def close_site(self, site_id: int) -> int:
            # Terminals, then file streams and uploads: the service is gone, the files not yet moved.
            assert NAME not in swarm.services and dirs.trashed == []
            closed.append(f"{self.kind} {site_id}")
            return 1

    ctx.sessions = (Sessions("terminals"), Sessions("files"))
    await dispatch(delete(2), ctx)

    assert closed == ["terminals 1", "files 1"] and dirs.trashed == [NAME]


async def test_a_late_update_older_than_the_delete_does_not_resurrect_the_site(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    await dispatch(delete(3), ctx)

    result = await dispatch(upsert(2), ctx)

    assert result.type == "site.stale" and result.applied_version == 3
    assert NAME not in swarm.services


async def test_a_newer_create_after_a_delete_recreates_the_site_and_clears_the_tombstone(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
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
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created", id=2, domains=["taken.example.com"]), ctx)

    started = time.monotonic()
    with pytest.raises(DomainConflict, match=r"taken\.example\.com already routed to site_0002") as info:
        await dispatch(upsert(1, "site.created", domains=["TAKEN.example.com"]), ctx)

    assert time.monotonic() - started < ctx.settings.domain_wait_seconds + 10  # seconds, not minutes
    assert info.value.retryable and info.value.dead_letter
    assert NAME not in swarm.services and NAME not in dirs.existing


@pytest.mark.parametrize(
    ("held", "claimed"),
    [
        (["alice.school.example"], ["*.school.example"]),
        (["*.school.example"], ["alice.school.example"]),
        (["alice.school.example"], ["*.alice.school.example"]),
        (["*.alice.school.example"], ["*.school.example"]),
        (["school.example"], ["*.school.example"]),
        (["deep.alice.school.example"], ["*.school.example"]),
    ],
)
async def test_a_wildcard_overlapping_another_sites_domain_is_a_conflict(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent], held: list[str], claimed: list[str]
) -> None:
    await dispatch(upsert(1, "site.created", id=2, domains=held), ctx)

    with pytest.raises(DomainConflict, match="site_0002"):
        await dispatch(upsert(1, "site.created", domains=claimed), ctx)

    assert NAME not in swarm.services


async def test_siblings_of_a_wildcard_zone_elsewhere_are_no_conflict(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created", id=2, domains=["*.alice.school.example"]), ctx)

    result = await dispatch(upsert(1, "site.created", domains=["bob.school.example", "*.carol.school.example"]), ctx)

    assert result.type == "site.deployed"


async def test_a_domain_let_go_while_the_claim_waits_is_taken_over(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    """Director moves a domain from site 2 to site 1; the claim arrives first and waits briefly."""
    ctx = replace(ctx, settings=ctx.settings.model_copy(update={"domain_wait_seconds": 60.0}))
    await dispatch(upsert(1, "site.created", id=2, domains=["moving.example.com"]), ctx)

    claim = asyncio.create_task(dispatch(upsert(1, "site.created", domains=["moving.example.com"]), ctx))
    await asyncio.sleep(0.1)
    assert not claim.done()
    started = time.monotonic()
    await dispatch(upsert(2, id=2, domains=["elsewhere.example.com"]), ctx)
    result = await claim

    assert result.type == "site.deployed"
    assert time.monotonic() - started < 20  # woken by the release, not by the timeout
    assert swarm.services[NAME].domains == ("moving.example.com",)


async def test_a_waiting_claim_does_not_hold_up_other_sites(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    ctx = replace(ctx, settings=ctx.settings.model_copy(update={"domain_wait_seconds": 60.0}))
    await dispatch(upsert(1, "site.created", id=2, domains=["taken.example.com"]), ctx)
    claim = asyncio.create_task(dispatch(upsert(1, "site.created", domains=["taken.example.com"]), ctx))
    await asyncio.sleep(0.05)

    async with asyncio.timeout(20):
        other = await dispatch(upsert(1, "site.created", id=3, domains=["free.example.com"]), ctx)

    assert other.type == "site.deployed" and not claim.done()
    claim.cancel()


async def test_policy_refuses_before_anything_is_created(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., SiteEvent]
) -> None:
    with pytest.raises(ImageNotAllowed):
        await dispatch(upsert(1, "site.created", image={"name": "busybox:latest", "custom": False}), ctx)

    assert not swarm.services and not dirs.existing


async def test_an_unsafe_directory_refuses_the_delete_before_removing_anything(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    dirs.unsafe.add(NAME)

    with pytest.raises(UnsafePath):
        await dispatch(delete(2), ctx)

    assert NAME in swarm.services and 1 not in swarm.tombstones


async def test_an_update_out_of_sequence_is_reloaded_and_retried(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    swarm.conflicts = 2

    result = await dispatch(upsert(2, domains=["again.example.com"]), ctx)

    assert result.type == "site.deployed" and swarm.services[NAME].site_version == 2
    assert swarm.calls.count(f"update {NAME}") == 3


async def test_a_service_that_fails_for_no_reason_of_the_site_is_dead_lettered(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    swarm.broken = Broken(ErrorCode.SERVICE_FAILED, "the task failed: invalid mount config")

    with pytest.raises(ServiceFailed, match="invalid mount config") as info:
        await dispatch(upsert(1, "site.created"), ctx)

    assert info.value.dead_letter


async def test_a_deployed_site_was_verified_through_traefik_at_its_current_tasks(
    ctx: Context, routes: FakeRoutes, upsert: Callable[..., SiteEvent]
) -> None:
    result = await dispatch(upsert(1, "site.created", domains=["*.wild.example.com", "b.example.com"]), ctx)

    assert result.probe is not None and result.probe.status == 200
    assert routes.verified == [(NAME, "b.example.com", (SERVER,))]


async def test_a_site_traefik_does_not_serve_fails_as_not_routed(
    ctx: Context, routes: FakeRoutes, upsert: Callable[..., SiteEvent]
) -> None:
    routes.unrouted.add(NAME)

    with pytest.raises(NotRouted) as info:
        await dispatch(upsert(1, "site.created"), ctx)

    assert info.value.code is ErrorCode.NOT_ROUTED


async def test_a_site_that_is_not_serving_needs_no_probe(
    ctx: Context, swarm: FakeSwarm, routes: FakeRoutes, upsert: Callable[..., SiteEvent]
) -> None:
    result = await dispatch(upsert(1, "site.created", serving=False), ctx)

    assert result.type == "site.deployed" and result.probe is None and result.service is not None
    assert result.service.replicas == 0 and swarm.rollouts[-1].replicas == 0
    assert routes.verified == []


async def test_a_dynamic_site_without_run_sh_is_kept_idle_and_says_so(
    ctx: Context, swarm: FakeSwarm, dirs: FakeSiteDirs, routes: FakeRoutes, upsert: Callable[..., SiteEvent]
) -> None:
    dirs.with_run_script.clear()

    with pytest.raises(SiteNotServing) as info:
        await dispatch(upsert(3, "site.created"), ctx)

    error = info.value
    assert error.code is ErrorCode.NO_RUN_SCRIPT and "idle" in error.message
    assert not error.dead_letter and error.applied_version == 3
    assert NAME in swarm.services  # kept, so the site starts once its owner adds run.sh
    assert swarm.rollouts[-1].runs_site_script is False  # an idle task is healthy, not failing
    assert routes.verified == []


async def test_a_static_site_needs_no_run_sh(
    ctx: Context, dirs: FakeSiteDirs, upsert: Callable[..., SiteEvent]
) -> None:
    dirs.with_run_script.clear()

    assert (await dispatch(upsert(1, "site.created", kind="static"), ctx)).type == "site.deployed"


async def test_a_crashing_run_sh_fails_with_its_last_log_lines(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    swarm.broken = Broken(ErrorCode.RUN_SCRIPT_FAILED, "run.sh exited with status 1", task_id="t1")
    swarm.logs = "connecting with ***\nTraceback: boom\n"  # the adapter masks env values

    with pytest.raises(SiteNotServing) as info:
        await dispatch(upsert(1, "site.created", env={"API_TOKEN": "s3cr3t-token"}), ctx)

    error = info.value
    assert error.code is ErrorCode.RUN_SCRIPT_FAILED and not error.dead_letter
    assert "status 1; last log lines:\nconnecting with ***\nTraceback: boom" in error.message
    assert "last_logs t1" in swarm.calls


async def test_a_failed_update_that_was_rolled_back_reports_the_version_still_serving(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    swarm.broken = Broken(ErrorCode.NOT_LISTENING, "rolled back: nothing answered", rolled_back=True)

    with pytest.raises(SiteNotServing) as info:
        await dispatch(upsert(2, domains=["a.example.com"], env={"X": "y"}), ctx)

    error = info.value
    assert error.rolled_back and error.applied_version == 1 and error.code is ErrorCode.NOT_LISTENING


# --- restarts -------------------------------------------------------------------------------------


async def test_a_restart_replaces_the_tasks_and_keeps_the_applied_version(
    ctx: Context, swarm: FakeSwarm, routes: FakeRoutes, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(4, "site.created"), ctx)
    swarm.calls.clear()

    result = await dispatch(restart(4), ctx)

    assert result.type == "site.deployed" and result.applied_version == 4 and result.probe is not None
    assert swarm.calls.index(f"restart {NAME}") < swarm.calls.index(f"converge {NAME}")
    assert swarm.services[NAME].site_version == 4
    assert routes.verified[-1] == (NAME, "a.example.com", (SERVER,))


async def test_a_redelivered_restart_restarts_nothing_again(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    request = restart(1)
    await dispatch(request, ctx)

    result = await dispatch(request, ctx)

    assert result.type == "site.deployed"
    assert swarm.calls.count(f"restart {NAME}") == 1


@pytest.mark.parametrize("deleted", [False, True])
async def test_a_restart_of_a_missing_site_is_not_found(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent], deleted: bool
) -> None:
    if deleted:
        await dispatch(upsert(1, "site.created"), ctx)
        await dispatch(delete(2), ctx)

    with pytest.raises(NotFound, match="deleted at version 2" if deleted else "does not exist") as info:
        await dispatch(restart(2), ctx)

    assert info.value.code is ErrorCode.NOT_FOUND and not info.value.retryable


async def test_a_restart_of_a_site_that_is_not_serving_does_nothing_and_says_so(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created", serving=False), ctx)

    result = await dispatch(restart(1), ctx)

    assert result.type == "site.deployed" and result.note is not None and "not serving" in result.note
    assert f"restart {NAME}" not in swarm.calls


async def test_a_restart_for_an_older_version_is_stale(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(3, "site.created"), ctx)

    result = await dispatch(restart(2), ctx)

    assert result.type == "site.stale" and result.applied_version == 3
    assert f"restart {NAME}" not in swarm.calls


async def test_a_restart_whose_new_tasks_fail_is_rolled_back_and_says_why(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(2, "site.created"), ctx)
    swarm.broken = Broken(ErrorCode.RUN_SCRIPT_FAILED, "rolled back: run.sh exited", rolled_back=True)

    with pytest.raises(SiteNotServing) as info:
        await dispatch(restart(2), ctx)

    assert info.value.rolled_back and info.value.applied_version == 2


# --- decide_upsert: the pure decision, apart from the awaits around it ----------------------------


def _service(version: int, fingerprint: str) -> Service:
    return Service("id1", NAME, 3, {VERSION: str(version), FINGERPRINT: fingerprint}, 1)


_ADMITTED = cast(Admitted, object())  # what admission decided: only passed through here


def _admitted() -> Admitted:
    return _ADMITTED


def _desired(fingerprint: str) -> Callable[[Admitted], ServiceSpec]:
    def build(admitted: Admitted) -> ServiceSpec:
        assert admitted is _ADMITTED
        return ServiceSpec(NAME, "img", {FINGERPRINT: fingerprint}, "net", 1, 1, 1)

    return build


def _refused() -> Admitted:
    raise ImageNotAllowed("policy changed since")


def _unbuilt(admitted: Admitted) -> ServiceSpec:
    raise AssertionError("no spec is built for a stale event")


def test_an_older_event_is_stale_whatever_policy_says_of_it_now() -> None:
    assert decide_upsert(3, _service(5, "f"), None, _refused, _unbuilt) == Stale(5, _service(5, "f"))
    assert decide_upsert(3, None, 3, _refused, _unbuilt) == Stale(3, None)  # deleted at its own version


def test_the_same_version_and_spec_is_unchanged_and_anything_else_applies() -> None:
    current = _service(4, "f")
    assert decide_upsert(4, current, None, _admitted, _desired("f")) == Unchanged(current)
    assert isinstance(decide_upsert(4, current, None, _admitted, _desired("g")), Apply)  # same version, new spec
    assert isinstance(decide_upsert(5, current, None, _admitted, _desired("f")), Apply)  # a newer version


def test_a_site_and_version_built_before_is_unchanged_without_building_again() -> None:
    current = _service(4, "f")
    assert decide_upsert(4, current, None, _refused, _unbuilt, built_before="f") == Unchanged(current)
    # Anything else is decided afresh: another fingerprint, another version, a stale event.
    assert isinstance(decide_upsert(4, current, None, _admitted, _desired("g"), built_before="g"), Apply)
    assert isinstance(decide_upsert(5, current, None, _admitted, _desired("f"), built_before="f"), Apply)
    assert decide_upsert(3, current, None, _refused, _unbuilt, built_before="f") == Stale(4, current)


async def test_a_redelivered_event_builds_no_spec_again(
    ctx: Context, upsert: Callable[..., SiteEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    event = upsert(1, "site.created")
    await dispatch(event, ctx)
    monkeypatch.setattr("orchestrator.sites.handlers.desired_service", _unbuilt)
    again = SiteCreated.model_validate_json(event.model_dump_json())  # as parsed from a redelivery

    result = await dispatch(again, ctx)

    assert result.type == "site.deployed" and len(ctx.fingerprints) == 1


def test_fingerprints_remember_the_latest_sites_only(upsert: Callable[..., SiteEvent]) -> None:
    fingerprints = Fingerprints(size=2)
    sites = [upsert(1, id=i).site for i in (1, 2, 3)]
    for site in sites:
        fingerprints.put(site, 1, f"f{site.id}")
    assert fingerprints.get(sites[0], 1) is None and fingerprints.get(sites[2], 1) == "f3"
    assert fingerprints.get(sites[2], 2) is None  # another version
    changed = upsert(1, id=3, name="renamed").site
    assert fingerprints.get(changed, 1) is None  # another desired state


def test_a_site_deleted_at_an_older_version_comes_back_and_clears_its_tombstone() -> None:
    decision = decide_upsert(6, None, 5, _admitted, _desired("f"))
    assert isinstance(decision, Apply) and decision.clears_tombstone and decision.current is None
    assert not cast(Apply, decide_upsert(6, None, None, _admitted, _desired("f"))).clears_tombstone


async def test_a_delete_of_a_site_that_existed_keeps_its_tombstone_for_days(
    ctx: Context, swarm: FakeSwarm, upsert: Callable[..., SiteEvent]
) -> None:
    await dispatch(upsert(1, "site.created"), ctx)
    await dispatch(delete(2), ctx)
    assert swarm.kept[1] == ctx.settings.tombstone_days * 86400


async def test_a_delete_of_a_site_never_seen_keeps_a_short_lived_tombstone(ctx: Context, swarm: FakeSwarm) -> None:
    result = await dispatch(delete(5, site_id=7), ctx)
    assert result.type == "site.removed"
    assert swarm.tombstones[7] == 5 and swarm.kept[7] == ctx.settings.unknown_tombstone_seconds


class FakeCertificates:
    """Answers which names are served; remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, list[str]]] = []
        self.released: list[int] = []

    async def secure(self, site_id: int, hosts: Any) -> SiteTls:
        self.asked.append((site_id, list(hosts)))
        served = [ServedDomain(domain=h, not_after=datetime(2030, 1, 1, tzinfo=UTC)) for h in hosts[:1]]
        pending = [PendingDomain(domain=h, status="issuing") for h in hosts[1:]]
        return SiteTls(served=served, pending=pending)

    def release(self, site_id: int) -> None:
        self.released.append(site_id)


async def test_a_deployed_site_says_which_of_its_names_https_serves(
    ctx: Context, upsert: Callable[..., SiteEvent], swarm: FakeSwarm
) -> None:
    certificates = FakeCertificates()
    ctx.certificates = certificates
    result = await dispatch(upsert(1, "site.created"), ctx)
    assert result.type == "site.deployed"
    assert certificates.asked == [(1, ["a.example.com", "b.example.com"])]
    assert result.tls is not None
    assert [s.domain for s in result.tls.served] == ["a.example.com"]
    assert [(p.domain, p.status) for p in result.tls.pending] == [("b.example.com", "issuing")]
    # Asked after the site answers through Traefik, never before.
    assert swarm.answering == {NAME}
    assert (await dispatch(delete(2), ctx)).type == "site.removed"
    assert certificates.released == [1]


async def test_a_site_kept_from_serving_waits_for_no_certificate(
    ctx: Context, upsert: Callable[..., SiteEvent]
) -> None:
    certificates = FakeCertificates()
    ctx.certificates = certificates
    result = await dispatch(upsert(1, "site.created", serving=False), ctx)
    assert result.type == "site.deployed" and result.tls is None
    assert certificates.asked == []


class FakeHealth:
    def __init__(self) -> None:
        self.watched: list[str] = []

    def watch(self, name: str) -> None:
        self.watched.append(name)


async def test_a_site_said_deployed_is_watched_for_health_from_then_on(
    ctx: Context, upsert: Callable[..., SiteEvent]
) -> None:
    """The monitor hears of it with the result, whatever its own looks saw meanwhile (a site that
    exits right after `site.deployed` is `down`)."""
    health = FakeHealth()
    events = SiteEvents(ctx, "orchestrator.results", 1.0, health=health)
    received = Received(Envelope(b"", "director.sites", "site.created", user_id="director"), "director")
    outcome = await events.process(upsert(1, "site.created"), received)
    assert isinstance(outcome, Completed) and outcome.outcome == "site.deployed"
    assert health.watched == [NAME]
    await events.process(upsert(2, serving=False), received)  # scaled to nothing: nothing to watch
    assert health.watched == [NAME]
