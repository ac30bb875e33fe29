"""The operator's wildcard certificates (ORCHESTRATOR_TLS_WILDCARD_FILES): each file a PEM bundle of
the certificate chain and its private key, e.g. a Docker secret made from what the operator's
DNS-01 client wrote. Names one label under a wildcard's base are served by it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orchestrator.certificates.ca import held_of
from orchestrator.certificates.records import Held
from orchestrator.logging_setup import fields

log = logging.getLogger("orchestrator.certificates")


@dataclass(frozen=True)
class Wildcard:
    bases: tuple[str, ...]  # S for each *.S among its names
    chain_pem: str
    key_pem: str
    held: Held
    path: str


def load(paths: list[Path]) -> list[Wildcard]:
    """Every readable wildcard bundle; one that cannot be used is logged (never its content) and
    skipped, so its names stay pending rather than the issuer stopping."""
    found = []
    for path in paths:
        try:
            found.append(read(path))
        except (OSError, ValueError) as exc:
            log.error("a wildcard certificate file cannot be used", extra=fields(path=str(path), error=str(exc)[:200]))
    return found


def read(path: Path) -> Wildcard:
    data = path.read_bytes()
    certificates = x509.load_pem_x509_certificates(data)
    key_block = _key_block(data)
    key = serialization.load_pem_private_key(key_block, password=None)
    leaf = certificates[0]
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError("the private key does not belong to the first certificate")
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        names = []
    bases = tuple(sorted({n.lower()[2:] for n in names if n.startswith("*.")}))
    if not bases:
        raise ValueError("the certificate names no wildcard (*.example.org)")
    chain = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)
    return Wildcard(bases, chain, key_block.decode(), held_of(chain), str(path))


def _key_block(data: bytes) -> bytes:
    text = data.decode("ascii", "replace")
    start = text.find("-----BEGIN ")
    while start != -1:
        end_marker = text.find("-----END ", start)
        stop = text.find("-----", end_marker + 9)
        block = text[start : stop + 5]
        if "PRIVATE KEY-----" in block.splitlines()[0]:
            return (block + "\n").encode()
        start = text.find("-----BEGIN ", stop + 5)
    raise ValueError("no private key in the file")
