"""Drift: a live spec mapped back and fingerprinted as at apply; what reconcile would do."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import PurePath
from typing import Any

import pytest

from orchestrator.commands.reconcile import plan
from orchestrator.config import Settings
from orchestrator.labels import FINGERPRINT, RESTARTED_BY, SITE_ID, VERSION
from orchestrator.monitor.drift import DAY, Inventory, edited, find_drift, restorable
from orchestrator.sites.admission import admit
from orchestrator.sites.service import Service, ServiceSpec, with_fingerprint
from orchestrator.sites.spec import desired_service
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.swarm.mapping import as_surveyed, from_docker, to_docker
from orchestrator.swarm.services import Swarm
from orchestrator_contract.sites import Site

SiteData = Callable[..., dict[str, Any]]
NETWORKS = {"n3tw0rk1d": "director-sites"}


def applied(site_data: SiteData, **site: Any) -> ServiceSpec:
    admitted = admit(Site.model_validate(site_data(**site)), Admission.of(Settings()))
    return desired_service(admitted, 4, SiteRuntime.of(Settings()), PurePath("/srv/sites/site_0001"))


def as_docker_stores_it(spec: ServiceSpec) -> dict[str, Any]:
    """What `inspect_service` returns as `Spec` for what `to_docker` sent."""
    args = copy.deepcopy(to_docker(spec))
    task = args["task_template"]
    task["Networks"] = [{"Target": "n3tw0rk1d"}]  # Docker keeps the network's id
    return {
        "Name": spec.name,
        "Labels": args["labels"],
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": spec.replicas}},
        "UpdateConfig": args["update_config"],
        "RollbackConfig": args["rollback_config"],
        "EndpointSpec": args["endpoint_spec"],
    }


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_a_spec_read_back_from_docker_has_the_fingerprint_it_was_applied_with(site_data: SiteData, kind: str) -> None:
    spec = applied(site_data, kind=kind, env={"A": "1"}, domains=["a.example.com", "b.example.com"])
    live = from_docker(as_docker_stores_it(spec), NETWORKS)
    assert live == spec
    assert not edited(live)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["TaskTemplate"]["ContainerSpec"]["Env"].append("HAND=1"),
        lambda s: s["TaskTemplate"]["ContainerSpec"].update(Image="evil:latest"),
        lambda s: s["TaskTemplate"]["Resources"]["Limits"].update(MemoryBytes=2**34),
        lambda s: s["Labels"].update({"traefik.http.routers.x.rule": "Host(`panel.example.com`)"}),
        lambda s: s["Mode"]["Replicated"].update(Replicas=5),
        lambda s: s["TaskTemplate"]["ContainerSpec"].update(User="0:0"),
        lambda s: s["TaskTemplate"].update(Networks=[{"Target": "other"}]),
        lambda s: s["TaskTemplate"]["RestartPolicy"].update(MaxAttempts=0),
    ],
)
def test_a_hand_edit_is_drift(site_data: SiteData, edit: Callable[[dict[str, Any]], None]) -> None:
    stored = as_docker_stores_it(applied(site_data))
    edit(stored)
    assert edited(from_docker(stored, NETWORKS))


def test_a_service_from_before_the_restart_bound_keeps_its_fingerprint(site_data: SiteData) -> None:
    # Applied by a version without the restart bound: no MaxAttempts/Window on the live spec and a
    # fingerprint computed without them. After the upgrade it must not read as edited by hand.
    old = with_fingerprint(replace(applied(site_data), restart_max_attempts=0, restart_window_ns=0))
    stored = as_docker_stores_it(old)
    del stored["TaskTemplate"]["RestartPolicy"]["MaxAttempts"], stored["TaskTemplate"]["RestartPolicy"]["Window"]
    assert not edited(from_docker(stored, NETWORKS))


def test_fields_added_later_leave_older_fingerprints_alone() -> None:
    # The fingerprint this spec had before the restart bound existed (recorded from that version):
    # services applied then must not read as edited after an upgrade.
    spec = ServiceSpec(
        name="site_0001", image="director/base:latest", labels={"a": "b"}, network="director-sites",
        replicas=1, nano_cpus=10**9, memory_bytes=2**28,
    )  # fmt: skip
    assert spec.fingerprint() == "c5c212b9ea0f87febea23ee9b0bf48f5"
    assert replace(spec, restart_max_attempts=30).fingerprint() != spec.fingerprint()


def test_a_restart_marker_is_not_drift(site_data: SiteData) -> None:
    stored = as_docker_stores_it(applied(site_data))
    stored["Labels"][RESTARTED_BY] = "some-request"
    assert not edited(from_docker(stored, NETWORKS))


def state(spec: ServiceSpec, previous: ServiceSpec | None = None, site_id: int = 1, version: int = 4) -> Service:
    """A surveyed service holding `spec` (and Docker's `previous` one) for a site at `version`."""
    labels = {**spec.labels, SITE_ID: str(site_id), VERSION: str(version)}
    return Service("id", spec.name, 7, labels, 1, running=1, live=spec, previous=previous)


def test_an_edit_over_the_applied_spec_is_restorable(site_data: SiteData) -> None:
    spec = applied(site_data)
    hand = replace(spec, env={**spec.env, "HAND": "1"})
    assert restorable(state(hand, previous=spec))
    assert not restorable(state(hand, previous=None))
    twice = replace(spec, env={**spec.env, "HAND": "0"})
    assert not restorable(state(hand, previous=twice))  # two edits: the applied spec is gone


def inspected(spec: dict[str, Any], previous: dict[str, Any] | None, index: int, id: str = "id") -> dict[str, Any]:
    return {"ID": id, "Version": {"Index": index}, "Spec": spec, "PreviousSpec": previous}


def test_a_service_is_as_surveyed_while_only_dockers_rollout_bookkeeping_moved(site_data: SiteData) -> None:
    spec = applied(site_data)
    stored = as_docker_stores_it(spec)
    hand = copy.deepcopy(stored)
    hand["TaskTemplate"]["ContainerSpec"]["Env"].append("HAND=1")
    surveyed = state(from_docker(hand, NETWORKS), previous=spec)  # index 7

    assert as_surveyed(surveyed, inspected(hand, stored, 7), lambda: NETWORKS)
    # The hand edit's own rollout completing moves the index: still the service reconcile saw.
    assert as_surveyed(surveyed, inspected(hand, stored, 9), lambda: NETWORKS)


def test_a_deploy_or_another_edit_since_the_survey_is_a_change(site_data: SiteData) -> None:
    spec = applied(site_data)
    stored = as_docker_stores_it(spec)
    hand = copy.deepcopy(stored)
    hand["TaskTemplate"]["ContainerSpec"]["Env"].append("HAND=1")
    surveyed = state(from_docker(hand, NETWORKS), previous=spec)

    deployed = as_docker_stores_it(applied(site_data, env={"NEW": "1"}))
    assert not as_surveyed(surveyed, inspected(deployed, hand, 9), lambda: NETWORKS)
    again = copy.deepcopy(hand)
    again["TaskTemplate"]["ContainerSpec"]["Env"].append("HAND=2")
    assert not as_surveyed(surveyed, inspected(again, hand, 9), lambda: NETWORKS)
    assert not as_surveyed(surveyed, inspected(hand, None, 9), lambda: NETWORKS)  # previous spec gone
    relabelled = copy.deepcopy(hand)
    relabelled["Labels"][VERSION] = "5"  # a deploy, or a version reset, changes labels only
    assert not as_surveyed(surveyed, inspected(relabelled, hand, 9), lambda: NETWORKS)
    # Removed and made again under its name since, however alike: another service.
    assert not as_surveyed(surveyed, inspected(hand, stored, 7, id="other"), lambda: NETWORKS)


def test_find_drift_finds_every_kind_and_reconcile_plans_only_safe_steps(site_data: SiteData) -> None:
    spec = applied(site_data)
    hand = replace(spec, env={**spec.env, "HAND": "1"})
    lost = replace(spec, name="site_0002", env={**spec.env, "HAND": "1"}, labels={**spec.labels})
    deleted = with_fingerprint(replace(spec, name="site_0003"))
    inventory = Inventory(
        services=[state(hand, previous=spec), state(lost, site_id=2), state(deleted, site_id=3, version=4)],
        tombstones={3: 5, 1: 2},  # site 1's old delete is older than its service
        site_dirs=["site_0001", "site_0002", "site_0003", "site_0042", "lost+found"],
        trash=[(".trash/site_0009-x", 31 * DAY), (".trash/site_0010-x", 2 * DAY)],
    )

    fleet = find_drift(inventory, trash_max_age_days=30)

    kinds = sorted((d.kind, d.subject) for d in fleet.drift)
    assert kinds == [
        ("edited", "site_0001"),
        ("edited", "site_0002"),
        ("old_trash", ".trash/site_0009-x"),
        ("tombstoned", "site_0003"),
        ("unmanaged_dir", "site_0042"),
    ]
    actions = {(step.drift.subject, step.action) for step in plan(fleet)}
    assert actions == {
        ("site_0001", "restore"),
        ("site_0002", "report"),  # no applied spec left to restore: Director resends
        ("site_0003", "remove"),
        ("site_0042", "report"),
        (".trash/site_0009-x", "report"),
    }


def test_a_service_without_a_recorded_fingerprint_is_not_called_edited(site_data: SiteData) -> None:
    spec = applied(site_data)
    legacy = replace(spec, labels={k: v for k, v in spec.labels.items() if k != FINGERPRINT})
    assert not edited(legacy)


class OneServiceEngine:
    """Docker's API as `Swarm.restore` and `remove_if_unchanged` use it, for one service; `run`
    makes it the `DockerClient` too. It refuses a write at a stale index, as Docker does."""

    def __init__(self, spec: dict[str, Any], previous: dict[str, Any], index: int) -> None:
        self.service = inspected(spec, previous, index)
        self.writes: list[tuple[int, dict[str, Any]]] = []
        self.removed = False

    async def run(self, call: Callable[[Any], Any]) -> Any:
        return call(self)

    def inspect_service(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.service)

    def networks(self) -> list[dict[str, str]]:
        return [{"Id": id, "Name": name} for id, name in NETWORKS.items()]

    def update_service(self, service_id: str, version: int, **spec: Any) -> None:
        assert version == self.service["Version"]["Index"], "update out of sequence"
        self.writes.append((version, spec))

    def remove_service(self, service: str) -> None:
        self.removed = True


async def test_restore_writes_the_applied_spec_at_the_index_docker_holds_now(site_data: SiteData) -> None:
    spec = applied(site_data)
    stored = as_docker_stores_it(spec)
    hand = copy.deepcopy(stored)
    hand["TaskTemplate"]["ContainerSpec"]["Env"].append("HAND=1")
    surveyed = state(from_docker(hand, NETWORKS), previous=spec)  # surveyed at index 7
    engine = OneServiceEngine(hand, stored, index=9)  # the edit's rollout completed since
    swarm = Swarm(engine)  # type: ignore[arg-type]

    assert await swarm.fleet.restore(surveyed)
    ((version, written),) = engine.writes
    assert version == 9 and written["task_template"] == stored["TaskTemplate"]
    assert written["labels"] == stored["Labels"]

    engine.service = inspected(as_docker_stores_it(applied(site_data, env={"NEW": "1"})), hand, 10)
    assert not await swarm.fleet.restore(surveyed)  # a deploy since: left alone
    assert not await swarm.fleet.remove_if_unchanged(surveyed) and not engine.removed
    assert len(engine.writes) == 1
