"""The certificate issuer's decisions (coverage, budget, renewal) and its loop, against an
in-memory CA, DNS and Traefik (tests/unit/fake_ca.py) and a store in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fake_ca import Clock, FakeCa, FakeProbe, FakeResolver, Reports, sign

from orchestrator.certificates import budget, wildcards
from orchestrator.certificates.budget import Ledger, Limits
from orchestrator.certificates.ca import CaError, held_of, new_key
from orchestrator.certificates.coverage import (
    Caa,
    caa_allows,
    caa_levels,
    pointed,
    refusal,
    registered_domain,
    wildcard_covering,
)
from orchestrator.certificates.issuer import Issuer
from orchestrator.certificates.policy import Policy
from orchestrator.certificates.records import Held, Record
from orchestrator.certificates.renewal import Due, Later, Schedule, backoff, expiring, next_step
from orchestrator.certificates.standing import site_tls
from orchestrator.certificates.store import Store
from orchestrator.config import Settings
from orchestrator.traefik.certificates import certificate_config
from orchestrator_contract.certificates import CertificateError, CertificateErrorCode
from orchestrator_contract.hostnames import parse_hostname

DAY = 86400.0
SCHEDULE = Schedule(renew_fraction=1 / 3, retry_base=60, retry_max=3600)


# --- coverage ------------------------------------------------------------------------------------


def test_a_wildcard_covers_one_label_under_its_base() -> None:
    bases = ["sites.example.com"]
    assert wildcard_covering("a.sites.example.com", bases) == "sites.example.com"
    assert wildcard_covering("*.sites.example.com", bases) == "sites.example.com"
    assert wildcard_covering("b.a.sites.example.com", bases) is None
    assert wildcard_covering("sites.example.com", bases) is None
    assert wildcard_covering("*.a.sites.example.com", bases) is None


def test_wildcards_and_addresses_are_refused_over_http01() -> None:
    wildcard = refusal("*.shop.example.org")
    assert wildcard is not None and wildcard.code is CertificateErrorCode.WILDCARD_NEEDS_DNS
    address = refusal("10.0.0.1")
    assert address is not None and address.code is CertificateErrorCode.NOT_ISSUABLE
    assert refusal("shop.example.org") is None


def test_the_registered_domain_groups_at_least_where_the_ca_does() -> None:
    assert registered_domain("a.b.example.com") == "example.com"
    assert registered_domain("example.com") == "example.com"
    # The PSL says example.co.uk; two labels say co.uk: stricter, never looser.
    assert registered_domain("www.example.co.uk") == "co.uk"


def test_a_name_points_here_only_when_every_address_is_the_edge() -> None:
    edge = ["127.0.0.1", "198.51.100.0/24"]
    assert pointed(["127.0.0.1"], edge)
    assert pointed(["198.51.100.7", "127.0.0.1"], edge)
    assert not pointed([], edge)
    assert not pointed(["127.0.0.1", "203.0.113.9"], edge)
    assert pointed(["2001:db8::1"], ["2001:db8::/32"])


def test_caa() -> None:
    le = ["letsencrypt.org"]
    assert caa_allows([], le)
    assert caa_allows([Caa(0, "issue", "letsencrypt.org")], le)
    assert caa_allows([Caa(0, "issue", "LetsEncrypt.org; validationmethods=http-01")], le)
    assert not caa_allows([Caa(0, "issue", "other-ca.invalid")], le)
    assert not caa_allows([Caa(0, "issue", ";")], le)  # nobody may issue
    assert caa_allows([Caa(0, "iodef", "mailto:ops@example.org")], le)
    assert not caa_allows([Caa(128, "future", "x")], le)  # an unknown critical tag
    assert caa_levels("a.b.example.com") == ["a.b.example.com", "b.example.com", "example.com"]


# --- budget --------------------------------------------------------------------------------------

LIMITS = Limits(orders=3, orders_window=3600, per_domain=2, per_domain_window=7 * DAY, failed_per_name=2)


def test_the_budget_admits_until_a_limit_then_says_when() -> None:
    ledger, now = Ledger(), 10_000.0
    for i in range(3):
        assert budget.admit(ledger, LIMITS, f"n{i}.example.org", now + i, renewal=True) is None
        ledger = budget.spend_order(ledger, now + i)
    # Three orders in the last hour: the fourth waits until the first leaves the window.
    assert budget.admit(ledger, LIMITS, "n3.example.org", now + 10, renewal=True) == now + 3600
    assert budget.admit(ledger, LIMITS, "n3.example.org", now + 3600.5, renewal=True) is None


def test_new_certificates_per_registered_domain_and_renewals_exempt() -> None:
    ledger, now = Ledger(), 10_000.0
    for name in ("a.example.org", "b.example.org"):
        ledger = budget.spend_certificate(ledger, name, now, renewal=False)
    assert budget.admit(ledger, LIMITS, "c.example.org", now, renewal=False) == now + 7 * DAY
    assert budget.admit(ledger, LIMITS, "c.example.net", now, renewal=False) is None
    assert budget.admit(ledger, LIMITS, "a.example.org", now, renewal=True) is None
    assert budget.spend_certificate(ledger, "a.example.org", now, renewal=True) == ledger


def test_failed_validations_per_name_and_pruning() -> None:
    ledger, now = Ledger(), 10_000.0
    for _ in range(2):
        ledger = budget.spend_failure(ledger, "a.example.org", now)
    assert budget.admit(ledger, LIMITS, "a.example.org", now, renewal=False) == now + 3600
    assert budget.admit(ledger, LIMITS, "b.example.org", now, renewal=False) is None
    pruned = budget.prune(budget.spend_order(ledger, now), LIMITS, now + 3601)
    assert pruned == Ledger()


# --- renewal -------------------------------------------------------------------------------------


def held(start: float, lifetime: float = 90 * DAY) -> Held:
    return Held(serial="1", not_before=start, not_after=start + lifetime, fingerprint="00")


def test_renewal_is_due_at_a_third_of_the_lifetime_left() -> None:
    record = Record(name="a.example.org", held=held(0))
    assert next_step(record, SCHEDULE, 59 * DAY) == Later(60 * DAY)
    assert next_step(record, SCHEDULE, 60 * DAY) == Due(renewal=True)
    assert next_step(Record(name="a.example.org"), SCHEDULE, 5) == Due(renewal=False)
    failing = record.model_copy(update={"retry_at": 61 * DAY})
    assert next_step(failing, SCHEDULE, 60.5 * DAY) == Later(61 * DAY)
    assert not expiring(record.held, SCHEDULE, 74 * DAY) and expiring(record.held, SCHEDULE, 75 * DAY)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_its_ceiling_with_a_little_jitter() -> None:
    delays = [backoff("a.example.org", n, SCHEDULE) for n in range(1, 9)]
    assert 54 <= delays[0] <= 66 and 108 <= delays[1] <= 132
    assert all(d <= 3600 for d in delays) and delays[-1] >= 3240
    assert backoff("a.example.org", 3, SCHEDULE) == backoff("a.example.org", 3, SCHEDULE)


# --- what Traefik reads --------------------------------------------------------------------------


def test_a_certificate_file_serves_it_and_redirects_its_names() -> None:
    text = certificate_config(
        deployment="director",
        hosts=[parse_hostname("shop.example.org")],
        cert_pem="CERT",
        key_pem="KEY",
        https_port=8443,
        priority=2,
    )
    config = json.loads(text)
    assert config["tls"]["certificates"] == [{"certFile": "CERT", "keyFile": "KEY"}]
    (router,) = config["http"]["routers"].values()
    assert router["rule"] == "Host(`shop.example.org`)" and router["entryPoints"] == ["web"]
    assert router["priority"] == 2 and router["service"] == "noop@internal"
    (middleware,) = config["http"]["middlewares"].values()
    assert middleware == {"redirectScheme": {"scheme": "https", "permanent": True, "port": "8443"}}
    production = json.loads(
        certificate_config(
            deployment="d",
            hosts=[parse_hostname("*.s.example.org")],
            cert_pem="C",
            key_pem="K",
            https_port=443,
            priority=2,
        )
    )
    (router,) = production["http"]["routers"].values()
    assert router["rule"] == r"HostRegexp(`^[a-z0-9-]+\.s\.example\.org$`)"
    assert "port" not in next(iter(production["http"]["middlewares"].values()))["redirectScheme"]


def test_the_store_writes_private_files_whole(tmp_path: Path) -> None:
    store = Store(tmp_path, "director")
    store.prepare()
    store.save(Record(name="a.example.org", site_id=3))
    store.publish("a.example.org", "{}")
    store.put_challenge("tok-EN_1", "answer")
    assert store.records()["a.example.org"].site_id == 3
    published = store.traefik_path("a.example.org")
    assert published.name == "director@a.example.org.yml"
    assert stat.S_IMODE(published.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "http01" / "tok-EN_1").stat().st_mode) == 0o644
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    with pytest.raises(ValueError):
        store.put_challenge("../escape", "x")
    with pytest.raises(ValueError):
        store.save(Record(name="../../etc/passwd"))
    store.drop("a.example.org")
    assert store.records() == {} and not published.exists()


# --- the issuer ----------------------------------------------------------------------------------


@dataclass
class World:
    clock: Clock
    ca: FakeCa
    resolver: FakeResolver
    probe: FakeProbe
    reports: Reports
    store: Store
    sites: dict[str, int]  # what the survey finds
    active: bool = True

    def issuer(self, settings: Settings, **kwargs: object) -> Issuer:
        async def survey() -> dict[str, int]:
            return dict(self.sites)

        return Issuer(
            Policy.of(settings),
            self.store,
            kwargs.get("ca", self.ca),  # type: ignore[arg-type]
            self.resolver,
            self.probe,
            self.reports,
            survey,
            lambda: self.active,
            kwargs.get("wildcards", ()),  # type: ignore[arg-type]
            clock=self.clock,
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    clock = Clock()
    return World(clock, FakeCa(clock), FakeResolver(), FakeProbe(), Reports(), Store(tmp_path, "director"), {})


@pytest.fixture
def tls_settings() -> Settings:
    return Settings(
        acme_directory_url="https://ca.test/dir",
        tls_wait_seconds=60,
        acme_orders_per_window=3,
        acme_certificates_per_domain=50,
    )


async def secure(issuer: Issuer, site_id: int, *names: str) -> object:
    """A site event's request, with the loop working meanwhile (as `run` does)."""
    asking = asyncio.create_task(issuer.secure(site_id, list(names)))
    await asyncio.sleep(0)
    await issuer.tick()
    return await asking


async def test_a_pointed_name_is_issued_served_and_reported(world: World, tls_settings: Settings) -> None:
    world.sites = {"shop.example.org": 7}
    issuer = world.issuer(tls_settings)
    tls = await secure(issuer, 7, "shop.example.org")
    assert [s.domain for s in tls.served] == ["shop.example.org"] and tls.pending == []  # type: ignore[attr-defined]
    assert world.ca.orders == ["shop.example.org"]
    assert world.reports.of("shop.example.org") == ["issued"]
    event = world.reports.events[0]
    assert event.site_id == 7 and event.not_after is not None and event.error is None
    config = json.loads(world.store.traefik_path("shop.example.org").read_text())
    chain = config["tls"]["certificates"][0]["certFile"]
    assert world.probe.presented == [("shop.example.org", held_of(chain).fingerprint)]
    # The key reaches Traefik's file only: not the records, the ledger or the event.
    key = config["tls"]["certificates"][0]["keyFile"]
    assert "PRIVATE KEY" in key
    for path in world.store.state.rglob("*"):
        if path.is_file():
            assert "PRIVATE KEY" not in path.read_text() or path.name == "account.json"
    assert "PRIVATE" not in event.model_dump_json()
    # Asked again: nothing new.
    assert (await secure(issuer, 7, "shop.example.org")).pending == []  # type: ignore[attr-defined]
    assert world.ca.orders == ["shop.example.org"]


async def test_a_name_not_pointed_here_is_reported_and_never_ordered(world: World, tls_settings: Settings) -> None:
    world.resolver.addresses_of = {"away.example.net": [], "elsewhere.example.net": ["203.0.113.9"]}
    world.sites = {"away.example.net": 1, "elsewhere.example.net": 1}
    issuer = world.issuer(tls_settings)
    tls = await secure(issuer, 1, "away.example.net", "elsewhere.example.net")
    assert tls.served == []  # type: ignore[attr-defined]
    pending = {p.domain: p for p in tls.pending}  # type: ignore[attr-defined]
    assert {p.error.code for p in pending.values()} == {CertificateErrorCode.DNS_NOT_POINTED}
    assert "203.0.113.9" in pending["elsewhere.example.net"].error.message
    assert all(p.status == "failed" and p.retry_at is not None for p in pending.values())
    assert world.ca.orders == []
    assert world.reports.of("away.example.net") == ["failed"]
    # Retried later, once the DNS points here, without the owner doing anything else.
    world.resolver.addresses_of = {}
    world.clock.now += 3600
    await issuer.tick()
    assert world.ca.orders == ["away.example.net", "elsewhere.example.net"]
    assert world.reports.of("away.example.net") == ["failed", "issued"]


async def test_a_site_event_retries_a_name_whose_dns_was_fixed_at_once(world: World, tls_settings: Settings) -> None:
    world.resolver.addresses_of = {"late.example.net": []}
    world.sites = {"late.example.net": 1}
    issuer = world.issuer(tls_settings)
    await secure(issuer, 1, "late.example.net")
    world.resolver.addresses_of = {}
    tls = await secure(issuer, 1, "late.example.net")
    assert [s.domain for s in tls.served] == ["late.example.net"]  # type: ignore[attr-defined]


async def test_caa_naming_another_ca_forbids_the_order(world: World, tls_settings: Settings) -> None:
    world.resolver.caa_of = {"x.example.org": [Caa(0, "issue", "other-ca.invalid")]}
    world.sites = {"x.example.org": 1}
    tls = await secure(world.issuer(tls_settings), 1, "x.example.org")
    assert tls.pending[0].error.code is CertificateErrorCode.CAA_FORBIDS  # type: ignore[attr-defined]
    assert world.ca.orders == []


async def test_an_exhausted_budget_queues_orders_and_reports_them(world: World, tls_settings: Settings) -> None:
    names = [f"s{i}.example.org" for i in range(5)]
    world.sites = dict.fromkeys(names, 1)
    issuer = world.issuer(tls_settings)  # 3 orders per 3 hours
    tls = await secure(issuer, 1, *names)
    assert len(tls.served) == 3 and world.ca.orders == names[:3]  # type: ignore[attr-defined]
    queued = [p for p in tls.pending if p.status == "queued"]  # type: ignore[attr-defined]
    assert [p.domain for p in queued] == names[3:]
    assert all(p.retry_at is not None and p.retry_at.timestamp() == world.clock.now + 3 * 3600 for p in queued)
    assert [world.reports.of(n) for n in names[3:]] == [["queued"], ["queued"]]
    await issuer.tick()  # nothing is due before the window moves on
    assert len(world.ca.orders) == 3 and world.reports.of(names[3]) == ["queued"]
    world.clock.now += 3 * 3600 + 1
    await issuer.tick()
    assert world.ca.orders == names
    assert world.reports.of(names[4]) == ["queued", "issued"]


async def test_renewal_replaces_the_certificate_before_expiry(world: World, tls_settings: Settings) -> None:
    world.sites = {"r.example.org": 1}
    issuer = world.issuer(tls_settings)
    await secure(issuer, 1, "r.example.org")
    first = world.store.traefik_path("r.example.org").read_text()
    world.clock.now += 59 * DAY
    await issuer.tick()
    assert world.ca.orders == ["r.example.org"]
    world.clock.now += 1 * DAY + 1
    await issuer.tick()
    assert world.ca.orders == ["r.example.org", "r.example.org"]
    assert world.reports.of("r.example.org") == ["issued", "renewed"]
    assert world.store.traefik_path("r.example.org").read_text() != first
    record = world.store.record("r.example.org")
    assert record is not None and record.held is not None
    assert record.held.not_after == pytest.approx(world.clock.now + 90 * DAY, abs=1)


async def test_a_failing_renewal_backs_off_and_warns_once_before_expiry(world: World, tls_settings: Settings) -> None:
    world.sites = {"f.example.org": 1}
    issuer = world.issuer(tls_settings)
    await secure(issuer, 1, "f.example.org")
    world.ca.failures["f.example.org"] = CaError(CertificateErrorCode.CA_UNAVAILABLE, "the CA is down")
    for _ in range(85):  # a day at a time, through the renewal window
        world.clock.now += DAY
        await issuer.tick()
    statuses = world.reports.of("f.example.org")
    assert statuses[0] == "issued" and statuses.count("expiring") == 1 and statuses.count("failed") == 1
    # Attempts backed off: far fewer than one per tick after the first failures.
    assert 2 <= len(world.ca.orders) <= 30


async def test_ca_errors_count_against_the_budget_and_back_off(world: World, tls_settings: Settings) -> None:
    world.ca.failures["v.example.org"] = CaError(
        CertificateErrorCode.VALIDATION_FAILED, "incorrectResponse: 404", failed_validation=True
    )
    world.sites = {"v.example.org": 1}
    issuer = world.issuer(tls_settings)
    tls = await secure(issuer, 1, "v.example.org")
    assert tls.pending[0].error.code is CertificateErrorCode.VALIDATION_FAILED  # type: ignore[attr-defined]
    ledger = world.store.ledger()
    assert len(ledger.orders) == 1 and len(ledger.failures["v.example.org"]) == 1
    await issuer.tick()
    assert len(world.ca.orders) == 1  # not before its backoff


async def test_a_name_that_left_its_site_loses_its_certificate(world: World, tls_settings: Settings) -> None:
    world.sites = {"keep.example.org": 1, "gone.example.org": 1}
    issuer = world.issuer(tls_settings)
    await secure(issuer, 1, "keep.example.org", "gone.example.org")
    world.sites = {"keep.example.org": 1}  # the site's update removed a name
    await secure(issuer, 1, "keep.example.org")
    await issuer.tick()
    assert not world.store.traefik_path("gone.example.org").exists()
    assert world.store.record("gone.example.org") is None
    assert world.store.traefik_path("keep.example.org").exists()
    assert world.reports.of("gone.example.org") == ["issued", "removed"]
    world.sites = {}  # the site is deleted
    issuer.release(1)
    await issuer.tick()
    assert world.store.records() == {} and world.store.published() == set()


async def test_a_survey_racing_a_site_event_keeps_the_new_name(world: World, tls_settings: Settings) -> None:
    gate = asyncio.Event()

    async def slow_survey() -> dict[str, int]:
        listed = dict(world.sites)  # the swarm as it was before the site's update
        await gate.wait()
        return listed

    issuer = world.issuer(tls_settings)
    issuer._survey = slow_survey
    surveying = asyncio.create_task(issuer.tick())
    await asyncio.sleep(0.05)
    asking = asyncio.create_task(issuer.secure(1, ["new.example.org"]))
    await asyncio.sleep(0)
    gate.set()
    await surveying
    await issuer.tick()
    assert [s.domain for s in (await asking).served] == ["new.example.org"]
    assert world.store.traefik_path("new.example.org").exists()


async def test_a_replica_taking_over_issues_nothing_twice(world: World, tls_settings: Settings) -> None:
    world.sites = {"a.example.org": 1}
    first = world.issuer(tls_settings)
    await secure(first, 1, "a.example.org")
    world.sites = {"a.example.org": 1, "b.example.org": 1}
    # b's order is placed, then the first replica stops before the certificate comes.
    world.ca.hold = asyncio.Event()
    stopped = asyncio.create_task(secure(first, 1, "b.example.org"))
    await asyncio.sleep(0.05)
    stopped.cancel()
    assert world.ca.orders == ["a.example.org", "b.example.org"]
    record = world.store.record("b.example.org")
    assert record is not None and record.order_url is not None
    second = world.issuer(tls_settings)
    tls = await secure(second, 1, "a.example.org", "b.example.org")
    assert {s.domain for s in tls.served} == {"a.example.org", "b.example.org"}  # type: ignore[attr-defined]
    assert world.ca.orders == ["a.example.org", "b.example.org"]  # none placed again
    assert world.ca.resumed == [record.order_url]
    assert world.reports.of("a.example.org") == ["issued"]


async def test_a_takeover_answers_a_site_event_as_soon_as_the_store_is_read(
    world: World, tls_settings: Settings
) -> None:
    """The event that made this replica active comes before its loop read the store: it is
    answered from the store at once, not after the wait bound (it once waited all of it)."""
    world.sites = {"a.example.org": 1}
    await secure(world.issuer(tls_settings), 1, "a.example.org")
    started = time.monotonic()
    tls = await secure(world.issuer(tls_settings), 1, "a.example.org")
    assert [s.domain for s in tls.served] == ["a.example.org"]  # type: ignore[attr-defined]
    assert time.monotonic() - started < 20
    assert world.ca.orders == ["a.example.org"]


async def test_a_standby_works_on_nothing(world: World, tls_settings: Settings) -> None:
    world.active = False
    world.sites = {"a.example.org": 1}
    issuer = world.issuer(tls_settings)
    tls = await issuer.secure(1, ["a.example.org"])
    assert tls.pending[0].status == "issuing" and world.ca.orders == []


async def test_names_under_a_wildcard_are_served_by_it(world: World, tls_settings: Settings, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = tmp_path / "wildcard.pem"
    chain = sign("*.sites.example.org", key.public_key(), world.clock.now - DAY, 60 * DAY)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bundle.write_bytes(chain.encode() + key_pem)
    loaded = wildcards.load([bundle, tmp_path / "missing.pem"])
    assert [w.bases for w in loaded] == [("sites.example.org",)]
    world.sites = {"a.sites.example.org": 1, "own.example.org": 1}
    issuer = world.issuer(tls_settings, wildcards=loaded)
    tls = await secure(issuer, 1, "a.sites.example.org", "own.example.org")
    served = {s.domain: s.wildcard for s in tls.served}  # type: ignore[attr-defined]
    assert served == {"a.sites.example.org": True, "own.example.org": False}
    assert world.ca.orders == ["own.example.org"]
    published = json.loads(world.store.traefik_path("*.sites.example.org").read_text())
    assert x509.load_pem_x509_certificate(published["tls"]["certificates"][0]["certFile"].encode())


async def test_without_an_acme_directory_names_are_pending_with_a_reason(world: World, settings: Settings) -> None:
    world.sites = {"a.example.org": 1}
    issuer = world.issuer(settings, ca=None)
    tls = await secure(issuer, 1, "a.example.org", "*.w.example.org")
    assert tls.served == []  # type: ignore[attr-defined]
    codes = [p.error.code for p in tls.pending]  # type: ignore[attr-defined]
    assert codes == [CertificateErrorCode.NO_ISSUER, CertificateErrorCode.WILDCARD_NEEDS_DNS]
    assert world.reports.events == []


def test_keys_are_ecdsa_p256() -> None:
    key = serialization.load_pem_private_key(new_key(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_status_shows_names_served_of_all_and_the_first_reason() -> None:
    from orchestrator.commands.status import tls_cell

    records = {
        "a.example.org": Record(name="a.example.org", held=held(1_000, 90 * DAY)),
        "b.example.org": Record(
            name="b.example.org",
            error=CertificateError(code=CertificateErrorCode.DNS_NOT_POINTED, message="m", retryable=True),
            retry_at=5_000,
        ),
    }
    tls = site_tls(["a.example.org", "b.example.org", "c.example.org"], records, [], 2_000, ordering=True)
    assert [s.domain for s in tls.served] == ["a.example.org"]
    assert [(p.domain, p.status) for p in tls.pending] == [("b.example.org", "failed"), ("c.example.org", "issuing")]
    assert tls_cell(tls) == "1/3 dns_not_pointed"
    assert tls_cell(site_tls(["a.example.org"], records, [], 2_000, ordering=True)) == "1/1"
    assert tls_cell(site_tls(["a.example.org"], {}, [], 2_000, ordering=False)) == "0/1 no_issuer"
    assert tls_cell(None) == "-"


async def test_the_lease_goes_to_the_active_replica_or_to_a_standby_once_it_ran_out(world: World) -> None:
    from orchestrator.certificates.lease import LEASE_SECONDS, Lease

    first = Lease(world.store, lambda: True, world.clock)  # the replica Director's events reach
    second = Lease(world.store, lambda: False, world.clock)  # a standby
    assert await first.hold()
    assert not await second.hold()  # a standby leaves a live lease alone
    world.clock.now += LEASE_SECONDS / 2 + 1
    assert await first.hold()  # renewed
    world.clock.now += LEASE_SECONDS - 1
    assert not await second.hold()
    world.clock.now += 2  # the holder stopped renewing: the standby takes over, no event needed
    assert await second.hold()
    assert await first.hold()  # the active replica takes it at once
    assert not await second.hold()


def test_the_https_settings_read_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ACME_EDGE_ADDRESSES", "127.0.0.1, 198.51.100.0/24")
    monkeypatch.setenv("ORCHESTRATOR_TLS_WILDCARD_FILES", "/run/secrets/a.pem,/run/secrets/b.pem")
    monkeypatch.setenv("ORCHESTRATOR_ALLOWED_DOMAIN_SUFFIXES", "example.com")
    settings = Settings()
    assert settings.acme_edge_addresses == ["127.0.0.1", "198.51.100.0/24"]
    assert settings.tls_wildcard_files == ["/run/secrets/a.pem", "/run/secrets/b.pem"]
    assert settings.allowed_domain_suffixes == ["example.com"]
