"""Where a name points and what CAA says of it, asked of the DNS the CA will ask (dnspython).

The issuer checks both before it orders: an order the CA cannot validate costs a failed
validation against its limits and tells the owner nothing the DNS did not already say.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from orchestrator.certificates.coverage import Caa, caa_levels


class DnsError(Exception):
    """The DNS did not answer (timeout, SERVFAIL): nothing is known, try again later."""


class Resolver(Protocol):
    async def addresses(self, name: str) -> list[str]:
        """The name's A and AAAA addresses (empty: it resolves to nothing). Raises DnsError."""

    async def caa(self, name: str) -> list[Caa]:
        """The relevant CAA record set: the closest one up the tree (empty: none). Raises DnsError."""


class DnsResolver:
    def __init__(self, server: str, timeout: float = 3.0) -> None:
        """`server`: "host:port" of the resolver to ask; empty: the system's."""
        if server:
            host, _, port = server.rpartition(":")
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [host.strip("[]")]
            self._resolver.port = int(port)
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout

    async def addresses(self, name: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            found += [r.to_text() for r in await self._query(name, rdtype)]
        return found

    async def caa(self, name: str) -> list[Caa]:
        for level in caa_levels(name):
            records = await self._query(level, "CAA")
            if records:
                return [_caa(r) for r in records]
        return []

    async def _query(self, name: str, rdtype: str) -> Sequence[dns.rdata.Rdata]:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
            raise DnsError(f"the DNS did not answer for {name} {rdtype}: {type(exc).__name__}") from None
        return list(answer)


def _caa(record: dns.rdata.Rdata) -> Caa:
    flags, tag, value = (getattr(record, a) for a in ("flags", "tag", "value"))
    return Caa(int(flags), tag.decode(errors="replace"), value.decode(errors="replace"))
