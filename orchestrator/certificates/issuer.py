"""The issuer: the active replica's loop that gets, renews and removes certificates, and what the
site handlers ask of it (`secure`, `release`).

What should exist comes from the sites' own names (a survey of this deployment's services, and
each site event's names at once); what exists is the store. Each name is worked on alone, one at
a time, when due (a heap of due times: an idle name costs nothing until its renewal):

    due -> points here? (DNS) -> CAA allows? -> budget admits? -> order (HTTP-01) -> the file
    Traefik reads -> Traefik presents it (a handshake) -> `issued`/`renewed`

Every step's outcome is written to the store before the next, so a replica that takes over (the
standby, when this one stops) continues from there: a valid certificate is kept, an order under
way is fetched, not placed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from orchestrator.certificates import budget as budgets
from orchestrator.certificates.budget import Ledger
from orchestrator.certificates.ca import Ca, held_of
from orchestrator.certificates.coverage import refusal
from orchestrator.certificates.due import Due
from orchestrator.certificates.lease import Lease
from orchestrator.certificates.ordering import Refused, order, refusal_before_order
from orchestrator.certificates.policy import Policy, Probe, Report, Survey
from orchestrator.certificates.records import Record, utc
from orchestrator.certificates.renewal import Later, backoff, expiring, next_step, renew_at
from orchestrator.certificates.resolver import Resolver
from orchestrator.certificates.standing import certificate_event, covering, decided, site_tls
from orchestrator.certificates.store import Store
from orchestrator.certificates.wildcards import Wildcard
from orchestrator.logging_setup import fields
from orchestrator_contract.certificates import (
    CertificateError,
    CertificateErrorCode,
    CertificateStatus,
    SiteTls,
)

log = logging.getLogger("orchestrator.certificates")
T = TypeVar("T")

# Failures the owner fixes outside (DNS, CAA) cost the CA nothing to check again: a site event
# for the name retries at once instead of waiting out the backoff.
FREE_RETRY = {CertificateErrorCode.DNS_NOT_POINTED, CertificateErrorCode.CAA_FORBIDS}
SERVE_TIMEOUT = 15.0


class Issuer:
    def __init__(
        self,
        policy: Policy,
        store: Store,
        ca: Ca | None,
        resolver: Resolver,
        probe: Probe,
        report: Report,
        survey: Survey,
        active: Callable[[], bool],
        wildcards: Sequence[Wildcard] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy, self.store, self.ca, self.resolver, self.probe = policy, store, ca, resolver, probe
        self._report, self._survey, self._active, self._clock = report, survey, active, clock
        self.wildcards = [w for w in wildcards]
        self.records: dict[str, Record] = {}
        self.wanted: dict[str, int] = {}  # name -> site id
        self._requested: dict[str, float] = {}  # name -> monotonic time of the last site event asking for it
        self._working: str | None = None
        self._unconfirmed: str | None = None  # just written; Traefik not yet seen presenting it
        self._due = Due()
        self._lease = Lease(store, active, clock)
        self._survey_at = 0.0
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._survey_due = True
        self._loaded = False

    # --- what the site handlers ask --------------------------------------------------------------
    async def secure(self, site_id: int, hosts: Sequence[str]) -> SiteTls:
        """Ask for certificates for the site's names (now), and wait, up to the policy's bound,
        until each is served or has a reason not to be; report where each stands."""
        names = list(dict.fromkeys(hosts))
        if self.ca is None and not self.wildcards:
            return self.tls(names)  # nothing will change: nothing to remember
        now_mono = time.monotonic()
        for name in names:
            self.wanted[name] = site_id
            self._requested[name] = now_mono
            record = self.records.get(name)
            if record is not None and record.error is not None and record.error.code in FREE_RETRY:
                self.records[name] = record.model_copy(update={"retry_at": self._clock()})
            self._push(self._clock(), name)
        if any(r.site_id == site_id and r.name not in names for r in self.records.values()):
            self._survey_due = True  # a name left the site: its certificate goes after a survey
        self._wake.set()
        if not self._active() or self.policy.wait_seconds <= 0:
            return self.tls(names)
        deadline = time.monotonic() + self.policy.wait_seconds
        async with self._changed:
            while (waiting := self._undecided(names)) and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._changed.wait()
        if waiting:
            log.info(
                "certificates still under way after the site event's wait",
                extra=fields(site_id=site_id, domains=waiting[:10], working=self._working),
            )
        return self.tls(names)

    def _undecided(self, names: Sequence[str]) -> list[str]:
        """The names neither served nor with a reason not to be that stands for now."""
        now, ordering = self._clock(), self.ca is not None
        return [
            n
            for n in names
            if not decided([n], self.records, self.wildcards, now, ordering=ordering, working=self._working)
        ]

    def release(self, site_id: int) -> None:
        """The site is gone: its names' certificates go at the next survey (right away)."""
        self._survey_due = True
        self._wake.set()

    def tls(self, names: Iterable[str]) -> SiteTls:
        # A renewal under way still serves the certificate it replaces; a first one is pending
        # until Traefik is seen presenting it.
        working = [self._unconfirmed] if self._unconfirmed else []
        return site_tls(
            names, self.records, self.wildcards, self._clock(), ordering=self.ca is not None, working=working
        )

    # --- the loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: while this replica is active, work on due names. Without a CA and
        without wildcards there is nothing to do, and the store is never touched."""
        if self.ca is None and not self.wildcards:
            return
        while True:
            try:
                if not await self._lease.hold():
                    self._loaded = False  # the other replica changes the store meanwhile
                    await self._sleep(1.0)
                    continue
                if not await self.tick():
                    await self._sleep(self._next_due_in())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the certificate issuer's loop failed; it goes on in a moment")
                await self._sleep(5.0)

    async def tick(self) -> int:
        """Load the store (after taking over), survey when due, work on every name due now; how many."""
        if not self._loaded:
            await self._load()
        if self._survey_due:
            await self._run_survey()
        worked = 0
        # Bounded: a name due again at once (a clock jump) waits for the next tick.
        for _ in range(len(self._due)):
            if (name := self._pop_due()) is None:
                break
            if worked and not await self._lease.hold():
                self._push(self._clock(), name)
                break
            await self._step(name)
            worked += 1
        return worked

    async def _load(self) -> None:
        await self._io(self.store.prepare)
        self.records = await self._io(self.store.records)
        for wildcard in self.wildcards:
            await self._publish_wildcard(wildcard)
        self._due.clear()
        for name in self.records:
            self._push(self._clock(), name)
        self._loaded, self._survey_due = True, True
        log.info(
            "certificate issuer active",
            extra=fields(records=len(self.records), wildcards=len(self.wildcards), ordering=self.ca is not None),
        )
        await self._notify()  # a site event that came first waits for what the store says

    async def _run_survey(self) -> None:
        started = time.monotonic()
        self._survey_due = False
        try:
            surveyed = await self._survey()
        except Exception as exc:
            log.warning("the certificate survey failed", extra=fields(error=str(exc)[:200]))
            self._survey_due = True
            return
        asked_since = {n for n, at in self._requested.items() if at >= started}
        kept = {n: self.wanted[n] for n in asked_since if n in self.wanted}
        self.wanted = {**surveyed, **kept}
        self._requested = {n: at for n, at in self._requested.items() if n in self.wanted}
        for name in self.wanted:
            if name not in self.records:
                self._push(self._clock(), name)
        for name in [n for n in self.records if n not in self.wanted]:
            await self._remove(name)
        known = {self.store.traefik_path(n) for n in self.records} | {
            self.store.traefik_path("*." + b) for w in self.wildcards for b in w.bases[:1]
        }
        for path in await self._io(self.store.published):
            if path not in known:
                await self._io(path.unlink, missing_ok=True)
        self._survey_at = time.monotonic() + self.policy.survey_seconds

    async def _step(self, name: str) -> None:
        site_id = self.wanted.get(name)
        if site_id is None:
            return
        record = self.records.get(name) or Record(name=name, site_id=site_id)
        if record.site_id != site_id:
            record = record.model_copy(update={"site_id": site_id})
        now = self._clock()
        if covering(name, self.wildcards) is not None:
            if name in self.records:  # once ordered, before a wildcard came: the wildcard serves it now
                await self._remove(name, report=False)
            return
        if self.ca is None or refusal(name) is not None:
            return  # nothing to order, nothing to keep: `tls` says why
        step = next_step(record, self.policy.schedule, now)
        if isinstance(step, Later):
            self._push(step.at, name)
            return
        self._working = name
        try:
            await self._obtain(record, step.renewal, now)
        finally:
            self._working = None
            await self._notify()

    async def _obtain(self, record: Record, renewal: bool, now: float) -> None:
        held = record.held
        if renewal and held is not None and not record.expiring_reported and expiring(held, self.policy.schedule, now):
            record = record.model_copy(update={"expiring_reported": True})
            await self._save(record)
            await self._emit(record, "expiring")
        checks = self.policy
        refused = await refusal_before_order(record.name, self.resolver, checks.edge, checks.caa_identities)
        if refused is not None:
            await self._fail(record, refused.code, refused.message)
            return
        ledger = budgets.prune(await self._io(self.store.ledger), self.policy.limits, now)
        if (wait := budgets.admit(ledger, self.policy.limits, record.name, now, renewal)) is not None:
            newly = not record.queued
            record = record.model_copy(update={"queued": True, "retry_at": wait})
            await self._save(record)
            self._push(wait, record.name)
            if newly:
                await self._emit(record, "queued")
            return
        assert self.ca is not None
        outcome = await order(self.ca, self.store, record, ledger, now)
        if isinstance(outcome, Refused):
            record = record.model_copy(update={"order_url": None, "queued": False})
            await self._fail(record, outcome.code, outcome.message, pause=outcome.pause)
            return
        ledger = budgets.spend_certificate(outcome.ledger, record.name, now, renewal)
        await self._install(record, outcome.chain, outcome.key, ledger)

    async def _install(self, record: Record, chain: str, key: bytes, ledger: Ledger) -> None:
        """Write the file Traefik reads, keep the record, see Traefik present it, tell Director."""
        name, held = record.name, held_of(chain)
        await self._io(self.store.publish, name, self.policy.traefik_file([name], chain, key.decode()))
        await self._io(self.store.drop_order_key, name)
        await self._io(self.store.save_ledger, ledger)
        was_served = record.held is not None
        record = Record(name=name, site_id=record.site_id, held=held)
        self._unconfirmed = None if was_served else name
        try:
            await self._save(record)
            self._push(renew_at(held, self.policy.schedule), name)
            if not await self.probe.wait_presented(name, held.fingerprint, SERVE_TIMEOUT):
                log.warning("Traefik does not present the new certificate yet", extra=fields(domain=name))
        finally:
            self._unconfirmed = None
        log.info(
            "certificate renewed" if was_served else "certificate issued",
            extra=fields(domain=name, site_id=record.site_id, serial=held.serial, not_after=utc(held.not_after)),
        )
        await self._emit(record, "renewed" if was_served else "issued")

    async def _fail(
        self,
        record: Record,
        code: CertificateErrorCode,
        message: str,
        retryable: bool = True,
        pause: float | None = None,
    ) -> None:
        now = self._clock()
        failures = record.failures + 1
        retry_at = None
        if retryable:
            retry_at = now + (pause if pause is not None else backoff(record.name, failures, self.policy.schedule))
            self._push(retry_at, record.name)
        changed = record.error is None or record.error.code != code
        record = record.model_copy(
            update={
                "failures": failures,
                "error": CertificateError(code=code, message=message, retryable=retryable),
                "retry_at": retry_at,
                "queued": False,
            }
        )
        await self._save(record)
        log.info("no certificate", extra=fields(domain=record.name, code=code.value, why=message[:200]))
        if changed and code is not CertificateErrorCode.NO_ISSUER:
            await self._emit(record, "failed")

    async def _remove(self, name: str, report: bool = True) -> None:
        record = self.records.pop(name, None)
        await self._io(self.store.drop, name)
        await self._notify()
        if record is not None and report and record.held is not None:
            log.info("certificate removed", extra=fields(domain=name, site_id=record.site_id))
            await self._emit(record, "removed")

    async def _publish_wildcard(self, wildcard: Wildcard) -> None:
        name = "*." + wildcard.bases[0]
        if wildcard.held.not_after <= self._clock():
            log.error("a wildcard certificate has expired", extra=fields(path=wildcard.path))
            await self._io(self.store.unpublish, name)
            return
        config = self.policy.traefik_file(
            ["*." + base for base in wildcard.bases], wildcard.chain_pem, wildcard.key_pem
        )
        await self._io(self.store.publish, name, config)

    # --- helpers ---------------------------------------------------------------------------------
    async def _emit(self, record: Record, status: CertificateStatus) -> None:
        try:
            await self._report(certificate_event(record, status))
        except Exception as exc:
            log.warning("a site.certificate could not be published", extra=fields(domain=record.name, error=str(exc)))

    async def _save(self, record: Record) -> None:
        self.records[record.name] = record
        await self._io(self.store.save, record)
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _push(self, at: float, name: str) -> None:
        if self._due.push(at, name):
            self._wake.set()

    def _pop_due(self) -> str | None:
        """A wanted name due now (a name no longer wanted is dropped on the way)."""
        while (name := self._due.pop(self._clock())) is not None:
            if name in self.wanted:
                return name
        return None

    def _next_due_in(self) -> float:
        survey_in = self._survey_at - time.monotonic()
        due_in = self._due.next_in(self._clock(), 60.0)
        return max(0.05, min(due_in, survey_in, 60.0))

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        if time.monotonic() >= self._survey_at:
            self._survey_due = True

    @staticmethod
    async def _io(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(function, *args, **kwargs)
