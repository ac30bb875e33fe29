"""Pure: which certificate a name needs, whether it points here, whether CAA lets the CA issue.

A name under one of the operator's wildcard certificates (``*.S`` covers ``a.S``, one label deep,
as TLS does) is served by it. Any other plain name gets its own certificate over HTTP-01. A
wildcard claim or an IP address cannot: HTTP-01 validates neither.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator_contract.certificates import CertificateErrorCode


@dataclass(frozen=True)
class Refused:
    code: CertificateErrorCode
    message: str


def wildcard_covering(name: str, wildcard_bases: Iterable[str]) -> str | None:
    """The base ``S`` of the wildcard ``*.S`` that covers `name`, if any. A wildcard claim ``*.a.S``
    is covered by ``*.a.S`` only (its names are one label under ``a.S``)."""
    for base in wildcard_bases:
        if name == "*." + base:
            return base
        head, dot, rest = name.partition(".")
        if dot and rest == base and head != "*":
            return base
    return None


def refusal(name: str) -> Refused | None:
    """Why no CA can issue `name` over HTTP-01, or None."""
    if name.startswith("*."):
        return Refused(
            CertificateErrorCode.WILDCARD_NEEDS_DNS,
            f"{name} is a wildcard: only a DNS-01 certificate serves it (the operator's wildcard files)",
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return None
    return Refused(CertificateErrorCode.NOT_ISSUABLE, f"{name} is an address: certificates are issued for names")


def registered_domain(name: str) -> str:
    """The group a CA counts `name`'s certificates in: its last two labels.

    Let's Encrypt counts per registered domain (the Public Suffix List's eTLD+1). The last two
    labels are always that name or a suffix of it, so grouping by them puts every name at least
    where the CA does (``a.example.co.uk`` and ``b.other.co.uk`` share ``co.uk`` here): the budget
    may be stricter than the CA, never looser, and needs no list that goes out of date.
    """
    return ".".join(name.rsplit(".", 2)[-2:])


def pointed(addresses: Sequence[str], edge: Sequence[str]) -> bool:
    """Every address `name` resolves to is one of the edge's (networks or addresses), and there is
    at least one: the CA may pick any of them, and one elsewhere fails the validation."""
    if not addresses:
        return False
    networks = [ipaddress.ip_network(e, strict=False) for e in edge]
    return all(any(ipaddress.ip_address(a) in net for net in networks) for a in addresses)


@dataclass(frozen=True)
class Caa:
    flags: int
    tag: str
    value: str


# Tags whose meaning we know (RFC 8659); an unknown one flagged critical forbids issuance.
_KNOWN_TAGS = {"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail", "issuevmc"}


def caa_allows(records: Sequence[Caa], identities: Sequence[str]) -> bool:
    """Whether the relevant CAA record set (the closest one up the tree; empty: none) lets a CA
    with one of `identities` (e.g. ``letsencrypt.org``) issue a certificate for a plain name."""
    if any(r.flags & 128 and r.tag.lower() not in _KNOWN_TAGS for r in records):
        return False
    issue = [r for r in records if r.tag.lower() == "issue"]
    if not issue:
        return True
    wanted = {i.lower() for i in identities}
    return any(r.value.split(";", 1)[0].strip().lower() in wanted for r in issue)


def caa_levels(name: str) -> list[str]:
    """The names whose CAA records are looked up, nearest first, down to two labels."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]
