"""The issuer's records, one per domain, as the store keeps them (no key material: keys live only
in the file Traefik reads and, while an order is under way, beside its record)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from orchestrator_contract.certificates import CertificateError


class Held(BaseModel):
    """The certificate in service for a name."""

    serial: str
    not_before: float  # epoch seconds
    not_after: float
    fingerprint: str  # SHA-256 of the leaf, hex: what a handshake through Traefik must present

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before


class Record(BaseModel):
    name: str
    site_id: int | None = None
    held: Held | None = None
    # An order under way: a replica taking over fetches it instead of placing a new one.
    order_url: str | None = None
    # Consecutive failures, the last one's reason, and when the next attempt is due.
    failures: int = 0
    error: CertificateError | None = None
    retry_at: float | None = None
    queued: bool = False
    expiring_reported: bool = False

    def valid(self, now: float) -> bool:
        return self.held is not None and self.held.not_before <= now + 300 and now < self.held.not_after


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
