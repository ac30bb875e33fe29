"""One name's way to a certificate once it is due: the checks before an order (the DNS points
here, CAA allows), then the order, with what must be written before each step so a replica taking
over continues instead of ordering again."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from orchestrator.certificates import budget as budgets
from orchestrator.certificates.budget import Ledger
from orchestrator.certificates.ca import Ca, CaError, new_key
from orchestrator.certificates.coverage import caa_allows, pointed
from orchestrator.certificates.records import Record
from orchestrator.certificates.resolver import DnsError, Resolver
from orchestrator.certificates.store import Store
from orchestrator_contract.certificates import CertificateErrorCode


@dataclass(frozen=True)
class Refused:
    """No order: why (a failure of the name's, retried later)."""

    code: CertificateErrorCode
    message: str
    # The CA's own refusal for its limits: come back no sooner than this.
    pause: float | None = None


@dataclass(frozen=True)
class Ordered:
    chain: str
    key: bytes
    ledger: Ledger  # with the order counted


async def refusal_before_order(
    name: str, resolver: Resolver, edge: tuple[str, ...], caa_ids: tuple[str, ...]
) -> Refused | None:
    """Why an order for `name` would be bound to fail, asked of the DNS (costs the CA nothing)."""
    try:
        addresses = await resolver.addresses(name)
        if not pointed(addresses, edge):
            where = ", ".join(addresses) or "nothing"
            return Refused(
                CertificateErrorCode.DNS_NOT_POINTED,
                f"{name} resolves to {where}, not to this cluster ({', '.join(edge)})",
            )
        if not caa_allows(await resolver.caa(name), caa_ids):
            return Refused(
                CertificateErrorCode.CAA_FORBIDS, f"a CAA record of {name} names no CA of {', '.join(caa_ids)}"
            )
    except DnsError as exc:
        return Refused(CertificateErrorCode.DNS_NOT_POINTED, str(exc))
    return None


# The CA said "too many": back no sooner than this (the library does not surface its Retry-After).
RATE_LIMITED_PAUSE = 3600.0


async def order(ca: Ca, store: Store, record: Record, ledger: Ledger, now: float) -> Ordered | Refused:
    """Order (or resume the order under way of) `record`'s name. The key is stored before the
    order, the order's URL and the spent budget as soon as the CA made it; a failure's budget
    (an order, a failed validation) is stored too."""
    name = record.name
    key = await asyncio.to_thread(store.order_key, name) if record.order_url else None
    if key is None:
        key = new_key()
        await asyncio.to_thread(store.save_order_key, name, key)
        record = record.model_copy(update={"order_url": None})
    placed: list[str] = []

    def on_order(url: str) -> None:  # on the CA's thread: the order exists, note it first
        placed.append(url)
        store.save(record.model_copy(update={"order_url": url, "queued": False}))
        store.save_ledger(budgets.spend_order(ledger, now))

    try:
        chain = await ca.issue(name, key, record.order_url, on_order)
    except CaError as exc:
        spent = budgets.spend_order(ledger, now) if placed else ledger
        if exc.failed_validation:
            spent = budgets.spend_failure(spent, name, now)
        await asyncio.to_thread(store.save_ledger, spent)
        await asyncio.to_thread(store.drop_order_key, name)
        pause = RATE_LIMITED_PAUSE if exc.code is CertificateErrorCode.RATE_LIMITED else None
        return Refused(exc.code, exc.message, pause)
    return Ordered(chain, key, budgets.spend_order(ledger, now) if placed else ledger)
