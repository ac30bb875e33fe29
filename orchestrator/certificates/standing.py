"""Pure: where each of a site's names stands (served, with what until when; or pending, and why),
from the issuer's records and the operator's wildcards. `site.deployed` and `orchestrator status`
both say it this way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from orchestrator.certificates.coverage import refusal, wildcard_covering
from orchestrator.certificates.records import Record, utc
from orchestrator.certificates.wildcards import Wildcard
from orchestrator_contract.certificates import (
    CertificateError,
    CertificateErrorCode,
    CertificateStatus,
    PendingDomain,
    ServedDomain,
    SiteCertificate,
    SiteTls,
)

NO_ISSUER = "no ACME directory is configured"


def covering(name: str, wildcards: Sequence[Wildcard]) -> Wildcard | None:
    return next((w for w in wildcards if wildcard_covering(name, w.bases) is not None), None)


def site_tls(
    names: Iterable[str],
    records: Mapping[str, Record],
    wildcards: Sequence[Wildcard],
    now: float,
    *,
    ordering: bool,
    working: Iterable[str] = (),
) -> SiteTls:
    """`ordering`: an ACME directory is configured; `working`: names whose order is under way (a
    just-written certificate Traefik has not been seen presenting is still under way)."""
    busy = set(working)
    served, pending = [], []
    for name in names:
        wildcard, record = covering(name, wildcards), records.get(name)
        if wildcard is not None and wildcard.held.not_after > now:
            served.append(ServedDomain(domain=name, not_after=utc(wildcard.held.not_after), wildcard=True))
        elif record is not None and record.held is not None and record.valid(now) and name not in busy:
            served.append(ServedDomain(domain=name, not_after=utc(record.held.not_after)))
        else:
            pending.append(_pending(name, record, ordering, name in busy))
    return SiteTls(served=served, pending=pending)


def _pending(name: str, record: Record | None, ordering: bool, busy: bool) -> PendingDomain:
    refused = refusal(name)
    if refused is not None or not ordering:
        code = refused.code if refused else CertificateErrorCode.NO_ISSUER
        error = CertificateError(code=code, message=refused.message if refused else NO_ISSUER, retryable=False)
        return PendingDomain(domain=name, status="failed", error=error)
    if record is None or busy:
        return PendingDomain(domain=name, status="issuing")
    retry_at = utc(record.retry_at) if record.retry_at else None
    if record.queued:
        return PendingDomain(domain=name, status="queued", retry_at=retry_at)
    if record.error is not None:
        return PendingDomain(domain=name, status="failed", retry_at=retry_at, error=record.error)
    return PendingDomain(domain=name, status="issuing")


def decided(
    names: Iterable[str],
    records: Mapping[str, Record],
    wildcards: Sequence[Wildcard],
    now: float,
    *,
    ordering: bool,
    working: str | None,
) -> bool:
    """Whether each name is served, or has a reason not to be that stands for now (a failure
    retried later, a queue): what a site event waits for."""
    for name in names:
        if covering(name, wildcards) is not None or refusal(name) is not None or not ordering:
            continue
        record = records.get(name)
        if working == name or record is None:
            return False
        if record.valid(now) or record.queued:
            continue
        if record.error is None or (record.retry_at is not None and record.retry_at <= now):
            return False
    return True


def certificate_event(record: Record, status: CertificateStatus) -> SiteCertificate:
    """The `site.certificate` saying `status` of the record's name (no key material is in a record)."""
    held = record.held
    return SiteCertificate(
        site_id=record.site_id,
        domain=record.name,
        status=status,
        not_after=utc(held.not_after) if held and status != "removed" else None,
        retry_at=utc(record.retry_at) if record.retry_at and status in ("queued", "failed") else None,
        error=record.error if status == "failed" else None,
    )
