"""Who may route which host names: overlaps (wildcards included), the labels and lookups that
find an overlapping claim in the swarm, the lock keys, reserved names and the per-site cap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.config import Settings
from orchestrator.errors import DomainNotAllowed
from orchestrator.sites import domains
from orchestrator.sites.admission import check_domains
from orchestrator.slices import Admission
from orchestrator_contract.hostnames import parse_hostname


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a.example.com", "a.example.com", True),
        ("a.example.com", "b.example.com", False),
        ("*.school.example", "alice.school.example", True),
        ("*.school.example", "deep.alice.school.example", True),
        ("*.school.example", "school.example", True),
        ("*.alice.school.example", "alice.school.example", True),
        ("*.alice.school.example", "bob.school.example", False),
        ("*.school.example", "*.alice.school.example", True),
        ("*.alice.school.example", "*.bob.school.example", False),
        ("*.school.example", "school.example.org", False),
        ("*.ample.com", "example.com", False),
    ],
)
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert domains.overlaps(a, b) is expected
    assert domains.overlaps(b, a) is expected


LABEL = st.from_regex(r"[a-c]{1,2}", fullmatch=True)
NAME = st.lists(LABEL, min_size=2, max_size=4).map(".".join)
CLAIM = st.one_of(NAME, NAME.map(lambda n: "*." + n))


@given(CLAIM, CLAIM)
def test_every_overlap_is_found_by_the_lookups_and_meets_on_a_lock(mine: str, theirs: str) -> None:
    """The swarm lookups for a claim find every service holding an overlapping claim, and two
    overlapping claims always meet on a key that one of them holds exclusively."""
    if not domains.overlaps(mine, theirs):
        return
    assert set(domains.lookup_labels(mine)) & set(domains.claim_labels([theirs]))
    mine_exclusive, mine_shared = domains.lock_keys([mine])
    theirs_exclusive, theirs_shared = domains.lock_keys([theirs])
    assert mine_exclusive & (theirs_exclusive | theirs_shared) or theirs_exclusive & mine_shared


def test_siblings_only_share_their_ancestors() -> None:
    assert domains.lock_keys(["a.example.com"]) == ({"a.example.com"}, {"example.com"})
    assert domains.lock_keys(["*.b.example.com"]) == ({"b.example.com"}, {"example.com"})


def test_claim_labels_record_hosts_and_their_zones() -> None:
    assert domains.claim_labels(["a.b.example.com", "*.w.example.org"]) == {
        "com.director.host.a.b.example.com": "",
        "com.director.zone.b.example.com": "",
        "com.director.zone.example.com": "",
        "com.director.host.*.w.example.org": "",
        "com.director.zone.example.org": "",
    }


@pytest.mark.parametrize(
    "claim",
    ["panel.school.example", "x.panel.school.example", "*.panel.school.example", "*.school.example"],
)
def test_reserved_names_and_everything_under_them_are_refused(claim: str) -> None:
    settings = Settings(reserved_domains=["panel.school.example"], allow_wildcard_domains=True)
    with pytest.raises(DomainNotAllowed, match="reserved"):
        check_domains([parse_hostname(claim)], Admission.of(settings))


def test_names_beside_a_reserved_one_are_allowed() -> None:
    settings = Settings(reserved_domains=["panel.school.example"], allow_wildcard_domains=True)
    check_domains(
        [parse_hostname("alice.school.example"), parse_hostname("*.alice.school.example")], Admission.of(settings)
    )


def test_a_site_has_at_most_the_configured_number_of_domains() -> None:
    settings = Settings(max_domains_per_site=3)
    hosts = [parse_hostname(f"d{i}.example.com") for i in range(4)]
    check_domains(hosts[:3], Admission.of(settings))
    with pytest.raises(DomainNotAllowed, match="at most 3"):
        check_domains(hosts, Admission.of(settings))


def test_the_claim_index_answers_lookups_like_the_labels_would() -> None:
    index = domains.ClaimIndex()
    index.replace("site_0002", {**domains.claim_labels(["alice.school.example"]), "traefik.enable": "true"})
    index.replace("site_0003", domains.claim_labels(["*.other.example"]))

    found = index.holders(domains.lookup_labels("*.school.example"))

    assert list(found) == ["site_0002"]
    assert "com.director.host.alice.school.example" in found["site_0002"]
    assert "traefik.enable" not in found["site_0002"]


def test_the_claim_index_forgets_a_removed_or_changed_service() -> None:
    index = domains.ClaimIndex()
    index.replace("site_0002", domains.claim_labels(["a.example.com"]))
    index.replace("site_0002", domains.claim_labels(["b.example.com"]))
    assert index.holders(domains.lookup_labels("a.example.com")) == {}
    assert list(index.holders(domains.lookup_labels("b.example.com"))) == ["site_0002"]
    index.remove("site_0002")
    assert index.holders(domains.lookup_labels("b.example.com")) == {} and len(index) == 0
