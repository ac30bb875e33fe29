"""HTTPS for every site, against the local ACME server (pebble, validating for real through Traefik's
web entrypoint after asking the local DNS: example.com points here, example.net nowhere).

Each stack here is an orchestrator of its own deployment (its own certificate records and files),
so nothing of it meets the other tests' orchestrators, which order no certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import time
import warnings
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
    HTTPS,
    ROOT_PEM,
    TLS_DIR,
    acme_settings,
    https_get,
    log_size,
    own_pebble,
    pebble_log_mentions,
    presented,
    second_traefik,
    traefik_file,
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


async def test_a_sites_names_are_served_over_https_and_go_with_it(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One site through its names' life (one stack and one site for all of it: each new site and
    stack costs seconds): served over HTTPS per name, redirected, presented alike by a second
    Traefik; then a name taken off the site goes, and the site's deletion takes the rest."""
    async with tls_stack("tls", tmp_path_factory.mktemp("https"), **acme_settings()) as stack:
        site_id = stack.new_site(f"secure {datetime.now(UTC).isoformat()}")
        names = [f"h{site_id}.example.com", f"www.h{site_id}.example.com"]
        await _served_per_name(stack, site_id, names)
        _status_shows_tls(stack, site_id, names)
        await _redirected(names)
        _only_modern_tls(names[0])
        await _a_second_traefik_serves_the_same(stack, names[0])
        await _a_removed_name_goes(stack, site_id, keep=names[0], drop=names[1])


async def _served_per_name(stack: TlsStack, site_id: int, names: list[str]) -> None:
    """site.deployed lists the pointed names served, each verified against the local root; a name
    that does not point here is `dns_not_pointed` and one whose CAA names another CA `caa_forbids`,
    and the CA is asked to validate neither; no key in any result or log line."""
    away, caa = f"h{site_id}.example.net", f"h{site_id}.caa-forbids.example.com"
    pebble_log = log_size()
    started = time.monotonic()
    result = await deploy(
        stack.running.director,
        stack.running.results,
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
        issued = await stack.running.results.wait_certificate(name, "issued")
        assert issued.site_id == site_id and issued.not_after is not None
        assert issued.not_after > datetime.now(UTC) + 80 * DAY
    failed = await stack.running.results.wait_certificate(away, "failed")
    assert failed.error is not None and failed.error.code == "dns_not_pointed"
    # No order for a name that cannot validate: the CA never tried it (nor the CAA-forbidden one).
    assert not pebble_log_mentions(away, pebble_log) and not pebble_log_mentions(caa, pebble_log)
    assert pebble_log_mentions(names[0], pebble_log)
    plain = await fetch(away)  # a name without a certificate keeps being served over HTTP
    assert plain.status_code == 200 and "secure" in plain.text

    # Keys stay in the files Traefik reads: never in results or the log.
    log = stack.running.orchestrator.tail(100_000)
    assert "PRIVATE KEY" not in log
    assert all(b"PRIVATE KEY" not in m.body for m in stack.running.results.messages)
    assert all("PRIVATE" not in c.model_dump_json() for c in stack.running.results.certificates)


def _status_shows_tls(stack: TlsStack, site_id: int, names: list[str]) -> None:
    """`orchestrator status`, as an operator runs it: the site's names served of all, and why not."""
    done = stack.running.orchestrator.cli("status", "-o", "json", "--site", str(site_id))
    (site,) = json.loads(done.stdout)["sites"]
    assert sorted(s["domain"] for s in site["tls"]["served"]) == sorted(names), (site["tls"], done.stderr)
    assert {p["error"]["code"] for p in site["tls"]["pending"]} == {"dns_not_pointed", "caa_forbids"}
    table = stack.running.orchestrator.cli("status", "--site", str(site_id)).stdout
    assert "TLS" in table.splitlines()[0] and "2/4 " in table, table


async def _redirected(names: list[str]) -> None:
    """Plain HTTP of a name with a certificate: a permanent redirect keeping path and query (301
    for a GET, 308 otherwise, as Traefik answers); the ACME challenge path stays plain."""
    redirect = await fetch(names[0], "/some/page?x=1&y=two")
    assert redirect.status_code == 301, (redirect.status_code, redirect.headers)
    assert redirect.headers["location"] == f"https://{names[0]}:8443/some/page?x=1&y=two"
    async with httpx.AsyncClient(timeout=5) as client:
        posted = await client.post(f"{TRAEFIK}/form?a=b", headers={"Host": names[1]}, content=b"x")
    assert posted.status_code == 308 and posted.headers["location"] == f"https://{names[1]}:8443/form?a=b"
    challenge = await fetch(names[0], "/.well-known/acme-challenge/not-a-token")
    assert challenge.status_code == 404 and "location" not in challenge.headers


def _handshake(name: str, *, highest: ssl.TLSVersion, lowest: ssl.TLSVersion | None = None, ciphers: str = "") -> str:
    """The version and suite Traefik agrees to for a client offering these, or the alert it sends."""
    context = ssl.create_default_context(cafile=str(ROOT_PEM))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # offering TLS 1.1 is the point
        context.maximum_version = highest
        if lowest is not None:
            context.minimum_version = lowest
    if ciphers:
        context.set_ciphers(ciphers)
    try:
        with socket.create_connection(HTTPS, timeout=5) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
            return f"{tls.version()} {(tls.cipher() or ('?',))[0]}"
    except ssl.SSLError as exc:
        return str(exc.reason)


def _only_modern_tls(name: str) -> None:
    """TLS 1.3 when offered; TLS 1.2 only with a forward-secret AEAD suite; CBC suites and TLS 1.1
    refused by Traefik itself (its alert, not the client giving up)."""
    assert _handshake(name, highest=ssl.TLSVersion.TLSv1_3).startswith("TLSv1.3 ")
    assert _handshake(name, highest=ssl.TLSVersion.TLSv1_2) == "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256"
    cbc = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
    assert _handshake(name, highest=ssl.TLSVersion.TLSv1_2, ciphers=cbc) == "SSLV3_ALERT_HANDSHAKE_FAILURE"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tls11 = ssl.TLSVersion.TLSv1_1
    assert (
        _handshake(name, highest=tls11, lowest=tls11, ciphers="DEFAULT:@SECLEVEL=0") == "TLSV1_ALERT_PROTOCOL_VERSION"
    )


async def _a_second_traefik_serves_the_same(stack: TlsStack, name: str) -> None:
    """Another Traefik reading the same directory (as on another manager) presents the same
    certificate for the name and routes it to the site."""
    fingerprint, _ = presented(name)
    with second_traefik(stack.running.api) as (other, logs):
        last: list[str] = []

        async def served() -> bool:
            try:
                answer = await https_get(name, "/", address=other)
            except (httpx.HTTPError, ssl.SSLError) as exc:
                last[:] = [repr(exc)]
                return False
            last[:] = [f"{answer.status_code} {answer.text[:80]!r}"]
            return answer.status_code == 200 and "secure" in answer.text

        try:
            await eventually(served, 20, interval=0.2)
        except AssertionError:
            raise AssertionError(f"the second Traefik does not serve {name}: {last}; {logs()}") from None
        assert presented(name, other)[0] == fingerprint


async def _a_removed_name_goes(stack: TlsStack, site_id: int, *, keep: str, drop: str) -> None:
    """The update is verified over HTTPS (plain HTTP of its names is redirected now); the name it
    drops is `removed`, its file goes and Traefik presents its default certificate for it; the
    other name's certificate is untouched. The site's deletion takes the rest."""
    running = stack.running
    dropped_cert, kept_cert = presented(drop)[0], presented(keep)[0]
    assert stack.file(drop).exists()
    updated = await deploy(running.director, running.results, site_event("site.updated", site_id, 2, domains=[keep]))
    assert updated.type == "site.deployed", updated
    assert updated.probe is not None and updated.probe.url.startswith("https://"), updated.probe
    assert updated.tls is not None and [s.domain for s in updated.tls.served] == [keep]
    await running.results.wait_certificate(drop, "removed", timeout=30)
    assert not stack.file(drop).exists()
    try:
        await eventually(lambda: presented(drop)[0] != dropped_cert, 15, interval=0.2)
    except AssertionError:
        left = sorted(p.name for p in stack.file(drop).parent.iterdir())
        raise AssertionError(f"{drop} still presented; Traefik's directory holds {left}") from None
    with pytest.raises((ssl.SSLError, httpx.ConnectError)):
        await https_get(drop, "/")  # Traefik's own default certificate now: not valid for the name
    assert presented(keep)[0] == kept_cert
    assert (await https_get(keep, "/")).status_code == 200

    deleted = await deploy(running.director, running.results, site_event("site.deleted", site_id, 3))
    assert deleted.type == "site.removed"
    await running.results.wait_certificate(keep, "removed", timeout=30)
    assert not stack.file(keep).exists()


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
    """A CA of the test's own issues 20-second certificates, renewed at half left (10 s after
    issue: the request loop runs from the deploy's result through the swap), while requests run
    back to back, each verified; none fails, and the new certificate takes over."""
    log_dir = tmp_path_factory.mktemp("https-renew")
    with own_pebble(20, log_dir) as (directory, root):
        async with tls_stack("tlsr", log_dir, **acme_settings(directory, tls_renew_fraction="0.5")) as stack:
            running = stack.running
            site_id = stack.new_site("renewing")
            name = f"r{site_id}.example.com"
            result = await deploy(
                running.director, running.results, site_event("site.created", site_id, 1, domains=[name])
            )
            assert result.tls is not None and [s.domain for s in result.tls.served] == [name], result.tls
            first, _ = presented(name)
            answers, failures = 0, list[str]()
            renewed = asyncio.create_task(running.results.wait_certificate(name, "renewed", timeout=30))
            while not renewed.done():
                try:
                    answer = await https_get(name, "/", cafile=root)
                    answers += 1
                    if answer.status_code != 200:
                        failures.append(str(answer.status_code))
                except (httpx.HTTPError, ssl.SSLError) as exc:
                    failures.append(repr(exc))
            event = renewed.result()
            assert failures == [] and answers > 20
            assert event.not_after is not None and event.not_after > datetime.now(UTC)
            await eventually(lambda: presented(name)[0] != first, 10, interval=0.2)
            assert (await https_get(name, "/", cafile=root)).status_code == 200
