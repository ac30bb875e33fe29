"""Admission in one step: domains, resources and image decided once, before the spec, which is
built from what was admitted; a refusal is a typed `NotAdmitted`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import PurePath
from typing import Any

import pytest
from fakes import BASE, PINNED

from orchestrator.config import Settings
from orchestrator.errors import DomainNotAllowed, ImageNotAllowed, NotAdmitted
from orchestrator.sites import domains
from orchestrator.sites.admission import Limits, admit
from orchestrator.sites.spec import desired_service
from orchestrator.slices import Admission, SiteRuntime
from orchestrator_contract.sites import Site

SiteData = Callable[..., dict[str, Any]]
POLICY = Admission.of(Settings(max_cpus=1, max_memory="512Mi", **PINNED))


def test_a_site_is_admitted_with_its_claims_limits_and_image(site_data: SiteData) -> None:
    site = Site.model_validate(site_data(resources={"cpus": 4, "memory": "256Mi"}))
    admitted = admit(site, POLICY)
    hosts = ["a.example.com", "b.example.com"]
    assert admitted.site is site and list(admitted.hosts) == hosts
    assert admitted.limits == Limits(nano_cpus=1_000_000_000, memory_bytes=256 * 2**20)  # the cpus clamped
    assert admitted.image == BASE  # as pinned: never a tag, never Docker Hub's
    assert admitted.claims.labels == domains.claim_labels(hosts)
    assert (set(admitted.claims.exclusive), set(admitted.claims.shared)) == domains.lock_keys(hosts)
    assert set(admitted.claims.lookup) == {key for host in hosts for key in domains.lookup_labels(host)}


def test_a_static_site_runs_the_static_image_whatever_it_names(site_data: SiteData) -> None:
    site = Site.model_validate(site_data(kind="static", image={"name": "not/allowed:1", "custom": False}))
    assert admit(site, POLICY).image == POLICY.static_image


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        ({"domains": ["*.example.com"]}, DomainNotAllowed),
        ({"image": {"name": "evil/image:1", "custom": False}}, ImageNotAllowed),
    ],
)
def test_a_refusal_is_a_typed_not_admitted(site_data: SiteData, overrides: dict[str, Any], refusal: type) -> None:
    with pytest.raises(refusal) as refused:
        admit(Site.model_validate(site_data(**overrides)), POLICY)
    assert isinstance(refused.value, NotAdmitted)


def test_the_spec_is_built_from_what_was_admitted(site_data: SiteData) -> None:
    admitted = admit(Site.model_validate(site_data()), POLICY)
    pinned = replace(admitted, image="registry.example/site_0001@sha256:" + "a" * 64)
    spec = desired_service(pinned, 3, SiteRuntime.of(Settings()), PurePath("/srv/sites/site_0001"))
    assert spec.image == pinned.image  # not resolved again
    assert (spec.nano_cpus, spec.memory_bytes) == (admitted.limits.nano_cpus, admitted.limits.memory_bytes)
    assert admitted.claims.labels.items() <= spec.labels.items()


def test_claims_name_each_rival_once_and_never_the_site_itself() -> None:
    claims = domains.claims_of(["a.example.com", "*.b.example.com"])
    holders = {
        "site_0001": frozenset({"com.director.host.a.example.com"}),
        "site_0002": frozenset({"com.director.host.a.example.com", "com.director.host.x.b.example.com"}),
        "site_0003": frozenset({"com.director.host.c.example.com"}),
    }
    assert claims.clashes(holders, "site_0001") == [
        "*.b.example.com, a.example.com already routed to site_0002",
    ]
