"""HTTPS for every site, against the local ACME server (pebble, validating for real through Traefik's
web entrypoint after asking the local DNS: example.com points here, example.net nowhere).

Each stack here is an orchestrator of its own deployment (its own certificate records and files),
so nothing of it meets the other tests' orchestrators, which order no certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support import (
    TRAEFIK,
    OrchestratorProcess,
    Running,
    deploy,
    fresh_site_id,
    scope,
    site_event,
    stack_running,
    wipe_sites,
    write_site,
)
from support.web import fetch

from harness.tls import (
    TLS_DIR,
    acme_settings,
    https_get,
    log_size,
    own_pebble,
    pebble_log_mentions,
    presented,
    second_traefik,
    traefik_file,
    wait_presented,
)
from harness.waiting import eventually

# site.deployed of a new site reports its pointed names served over HTTPS within this (the docs'
# bound; locally a name takes about 1-2 s once the site answers over HTTP).
SERVED_WITHIN = 60.0
DAY = timedelta(days=1)


@dataclass
class TlsStack:
    running: Running
    deployment: str
    made: list[int] = field(default_factory=list)

    def new_site(self, page: str) -> int:
        site_id = fresh_site_id()
        self.made.append(site_id)
        write_site(self.running.sites_root, site_id, page=page)
        return site_id

    def file(self, name: str) -> Path:
        return traefik_file(self.deployment, name)


@contextlib.asynccontextmanager
async def tls_stack(name: str, log_dir: Path, **settings: str) -> AsyncIterator[TlsStack]:
    """A stack of its own deployment; its sites, certificate files and records go afterwards."""
    deployment = f"{scope.DEPLOYMENT}-{name}"
    try:
        async with stack_running(name, log_dir, deployment=deployment, tls_survey_seconds="5", **settings) as running:
            stack = TlsStack(running, deployment)
            try:
                yield stack
            finally:
                wipe_sites(running.api, set(stack.made))
    finally:
        for path in (TLS_DIR / "traefik").glob(f"{deployment}@*"):
            path.unlink(missing_ok=True)
        shutil.rmtree(TLS_DIR / "state" / deployment, ignore_errors=True)


@pytest.fixture(scope="module")
async def https(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsStack]:
    async with tls_stack("tls", tmp_path_factory.mktemp("https"), **acme_settings()) as running:
        yield running


async def test_a_new_site_is_served_over_https_with_a_valid_certificate_per_domain(https: TlsStack) -> None:
    site_id = https.new_site(f"secure {datetime.now(UTC).isoformat()}")
    names = [f"h{site_id}.example.com", f"www.h{site_id}.example.com"]
    away, caa = f"h{site_id}.example.net", f"h{site_id}.caa-forbids.example.com"
    pebble_log = log_size()
    started = time.monotonic()
    result = await deploy(
        https.running.director,
        https.running.results,
        site_event("site.created", site_id, 1, domains=[*names, away, caa]),
    )
    took = time.monotonic() - started
    assert result.type == "site.deployed", result
    assert result.tls is not None
    assert sorted(s.domain for s in result.tls.served) == sorted(names), result.tls
    assert took < SERVED_WITHIN
    pending = {p.domain: p for p in result.tls.pending}
    assert set(pending) == {away, caa}
    assert pending[away].status == "failed" and pending[away].error is not None
    assert pending[away].error.code == "dns_not_pointed" and pending[away].retry_at is not None
    assert pending[caa].error is not None and pending[caa].error.code == "caa_forbids"

    for name in names:
        answer = await https_get(name, "/")  # verified against the local CA's root, for this name
        assert answer.status_code == 200 and "secure" in answer.text
        issued = await https.running.results.wait_certificate(name, "issued")
        assert issued.site_id == site_id and issued.not_after is not None
        assert issued.not_after > datetime.now(UTC) + 80 * DAY
    failed = await https.running.results.wait_certificate(away, "failed")
    assert failed.error is not None and failed.error.code == "dns_not_pointed"
    # No order for a name that cannot validate: the CA never tried it (nor the CAA-forbidden one).
    assert not pebble_log_mentions(away, pebble_log) and not pebble_log_mentions(caa, pebble_log)
    assert pebble_log_mentions(names[0], pebble_log)

    # Plain HTTP of a name with a certificate: a permanent redirect keeping path and query (301
    # for a GET, 308 otherwise, as Traefik answers); the ACME challenge path stays plain; a name
    # without a certificate keeps being served over HTTP.
    redirect = await fetch(names[0], "/some/page?x=1&y=two")
    assert redirect.status_code == 301, (redirect.status_code, redirect.headers)
    assert redirect.headers["location"] == f"https://{names[0]}:8443/some/page?x=1&y=two"
    async with httpx.AsyncClient(timeout=5) as client:
        posted = await client.post(f"{TRAEFIK}/form?a=b", headers={"Host": names[1]}, content=b"x")
    assert posted.status_code == 308 and posted.headers["location"] == f"https://{names[1]}:8443/form?a=b"
    challenge = await fetch(names[0], "/.well-known/acme-challenge/not-a-token")
    assert challenge.status_code == 404 and "location" not in challenge.headers
    plain = await fetch(away)
    assert plain.status_code == 200 and "secure" in plain.text

    # Keys stay in the files Traefik reads: never in results or the log.
    log = https.running.orchestrator.tail(100_000)
    assert "PRIVATE KEY" not in log
    assert all(b"PRIVATE KEY" not in m.body for m in https.running.results.messages)
    assert all("PRIVATE" not in c.model_dump_json() for c in https.running.results.certificates)


async def test_two_traefik_instances_serve_the_same_certificate(https: TlsStack) -> None:
    site_id = https.new_site("twice")
    name = f"t{site_id}.example.com"
    result = await deploy(
        https.running.director, https.running.results, site_event("site.created", site_id, 1, domains=[name])
    )
    assert result.tls is not None and [s.domain for s in result.tls.served] == [name]
    fingerprint, _ = presented(name)
    with second_traefik(https.running.api) as (other, logs):
        try:
            await wait_presented(name, fingerprint, other)
        except AssertionError:
            raise AssertionError(f"the second Traefik does not present the certificate: {logs()}") from None
        last: list[str] = []

        async def routed() -> bool:  # its swarm provider's first poll may still be on its way
            answer = await https_get(name, "/", address=other)
            last[:] = [f"{answer.status_code} {answer.text[:80]!r}"]
            return answer.status_code == 200 and "twice" in answer.text

        try:
            await eventually(routed, 20)
        except AssertionError:
            raise AssertionError(f"the second Traefik does not route the site: {last}; {logs()}") from None


async def test_a_removed_domain_stops_being_served_and_its_certificate_goes(https: TlsStack) -> None:
    site_id = https.new_site("moving")
    keep, drop = f"k{site_id}.example.com", f"d{site_id}.example.com"
    first = await deploy(
        https.running.director, https.running.results, site_event("site.created", site_id, 1, domains=[keep, drop])
    )
    assert first.tls is not None and len(first.tls.served) == 2, first.tls
    dropped_cert, _ = presented(drop)
    kept_cert, _ = presented(keep)
    assert https.file(drop).exists()

    second = await deploy(
        https.running.director, https.running.results, site_event("site.updated", site_id, 2, domains=[keep])
    )
    assert second.tls is not None and [s.domain for s in second.tls.served] == [keep]
    await https.running.results.wait_certificate(drop, "removed", timeout=30)
    assert not https.file(drop).exists()
    try:
        await eventually(lambda: presented(drop)[0] != dropped_cert, 15, interval=0.2)
    except AssertionError:
        left = sorted(p.name for p in https.file(drop).parent.iterdir())
        raise AssertionError(f"{drop} still presented; Traefik's directory holds {left}") from None
    with pytest.raises((ssl.SSLError, httpx.ConnectError)):
        await https_get(drop, "/")  # Traefik's own default certificate now: not valid for the name
    assert presented(keep)[0] == kept_cert  # the other name's certificate was not touched
    assert (await https_get(keep, "/")).status_code == 200

    deleted = await deploy(https.running.director, https.running.results, site_event("site.deleted", site_id, 3))
    assert deleted.type == "site.removed"
    await https.running.results.wait_certificate(keep, "removed", timeout=30)
    assert not https.file(keep).exists()


async def test_a_budget_exhausted_queues_and_a_takeover_issues_nothing_twice(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two orders per window: the third name waits, reported `queued`. Then the standby replica
    takes over: it keeps the two certificates (the same ones are presented), places no order (the
    CA is asked to validate nothing), and the third name stays queued (the budget's ledger is
    shared too)."""
    log_dir = tmp_path_factory.mktemp("https-budget")
    settings = acme_settings(acme_orders_per_window="2")
    async with tls_stack("tlsb", log_dir, **settings) as stack:
        running = stack.running
        site_id = stack.new_site("budget")
        names = [f"b{i}-{site_id}.example.com" for i in range(3)]
        result = await deploy(running.director, running.results, site_event("site.created", site_id, 1, domains=names))
        assert result.tls is not None
        assert sorted(s.domain for s in result.tls.served) == names[:2], result.tls
        (queued,) = result.tls.pending
        assert queued.domain == names[2] and queued.status == "queued" and queued.retry_at is not None
        assert queued.retry_at > datetime.now(UTC) + timedelta(hours=2)
        event = await running.results.wait_certificate(names[2], "queued")
        assert event.retry_at is not None
        before = {name: presented(name)[0] for name in names[:2]}

        standby = OrchestratorProcess(running.orchestrator.env, log_dir / "standby.log")
        standby.start()
        try:
            await standby.wait_consuming()
            pebble_log = log_size()
            assert running.orchestrator.stop() == 0
            # The standby is told it took over by the first event it gets (or, with none, by the
            # issuer's lease running out).
            again = await deploy(
                running.director, running.results, site_event("site.updated", site_id, 2, domains=names)
            )
            assert any(line.get("msg") == "certificate issuer active" for line in standby.log_lines())
            assert again.tls is not None
            assert sorted(s.domain for s in again.tls.served) == names[:2]
            assert [p.status for p in again.tls.pending] == ["queued"]
            await asyncio.sleep(2)  # time for anything the standby would (wrongly) start
            assert {name: presented(name)[0] for name in names[:2]} == before
            assert not any(pebble_log_mentions(name, pebble_log) for name in names)
            assert running.results.certificate_statuses(names[0]) == ["issued"]
        finally:
            if standby.alive:
                assert standby.stop() == 0, standby.tail()


async def test_a_certificate_near_expiry_is_renewed_without_a_failed_request(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A CA of the test's own issues 15-second certificates: renewed at a third left (5 s), while
    requests run back to back, each verified; none fails, and the new certificate takes over."""
    log_dir = tmp_path_factory.mktemp("https-renew")
    with own_pebble(15, log_dir) as (directory, root):
        async with tls_stack("tlsr", log_dir, **acme_settings(directory)) as stack:
            running = stack.running
            site_id = stack.new_site("renewing")
            name = f"r{site_id}.example.com"
            result = await deploy(
                running.director, running.results, site_event("site.created", site_id, 1, domains=[name])
            )
            assert result.tls is not None and [s.domain for s in result.tls.served] == [name], result.tls
            first, _ = presented(name)
            answers, failures = 0, []
            renewed = asyncio.create_task(running.results.wait_certificate(name, "renewed", timeout=30))
            while not renewed.done():
                try:
                    answer = await https_get(name, "/", cafile=root)
                    answers += 1
                    if answer.status_code != 200:
                        failures.append(answer.status_code)
                except (httpx.HTTPError, ssl.SSLError) as exc:
                    failures.append(repr(exc))
            event = renewed.result()
            assert failures == [] and answers > 20
            assert event.not_after is not None and event.not_after > datetime.now(UTC)
            await eventually(lambda: presented(name)[0] != first, 10, interval=0.2)
            assert (await https_get(name, "/", cafile=root)).status_code == 200
