"""In-memory stand-ins for the certificate issuer's adapters: a CA that signs at once with a key
of its own (and fails, or waits, when told), a DNS that answers from a table, a Traefik that
presents whatever was written, a clock that moves when told."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator.certificates.ca import CaError
from orchestrator.certificates.coverage import Caa
from orchestrator_contract.certificates import SiteCertificate


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def sign(name: str, public_key: ec.EllipticCurvePublicKey, start: float, lifetime: float) -> str:
    """A certificate for `name` (`*.x` too) on `public_key`, signed by a throwaway CA."""
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(start, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(start + lifetime, datetime.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class FakeCa:
    clock: Callable[[], float]
    lifetime: float = 90 * 86400.0
    orders: list[str] = field(default_factory=list)  # names of every order placed
    resumed: list[str] = field(default_factory=list)  # order URLs fetched instead of placed
    failures: dict[str, CaError] = field(default_factory=dict)  # name -> raised at every order
    # Set: the next order is placed and then waits here (a replica stopping mid-order).
    hold: asyncio.Event | None = None
    _urls: dict[str, str] = field(default_factory=dict)

    async def issue(self, name: str, key_pem: bytes, order_url: str | None, on_order: Callable[[str], None]) -> str:
        if order_url is not None and self._urls.get(order_url) == name:
            self.resumed.append(order_url)
        else:
            self.orders.append(name)
            order_url = f"https://ca.test/order/{len(self.orders)}"
            self._urls[order_url] = name
            on_order(order_url)
            if self.hold is not None:
                hold, self.hold = self.hold, None
                await hold.wait()
        if name in self.failures:
            raise self.failures[name]
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return sign(name, key.public_key(), self.clock(), self.lifetime)


@dataclass
class FakeResolver:
    pointed_here: str = "127.0.0.1"
    # Names resolving elsewhere (or to nothing: an empty list), and CAA record sets.
    addresses_of: dict[str, list[str]] = field(default_factory=dict)
    caa_of: dict[str, list[Caa]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def addresses(self, name: str) -> list[str]:
        self.asked.append(name)
        return self.addresses_of.get(name, [self.pointed_here])

    async def caa(self, name: str) -> list[Caa]:
        return self.caa_of.get(name, [])


@dataclass
class FakeProbe:
    presented: list[tuple[str, str]] = field(default_factory=list)

    async def wait_presented(self, name: str, fingerprint: str, timeout: float) -> bool:
        self.presented.append((name, fingerprint))
        return True


@dataclass
class Reports:
    events: list[SiteCertificate] = field(default_factory=list)

    async def __call__(self, event: SiteCertificate) -> None:
        self.events.append(event)

    def of(self, domain: str) -> list[str]:
        return [e.status for e in self.events if e.domain == domain]
