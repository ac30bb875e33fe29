"""The issuer as `orchestrator run` builds it from the settings: the store, the CA (none without
an ACME directory), the DNS, Traefik's HTTPS entrypoint, the operator's wildcards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from orchestrator.certificates import wildcards
from orchestrator.certificates.ca import AcmeCa
from orchestrator.certificates.issuer import Issuer
from orchestrator.certificates.policy import Policy, Report, Survey
from orchestrator.certificates.resolver import DnsResolver
from orchestrator.certificates.store import Store
from orchestrator.config import Settings
from orchestrator.traefik.handshake import TlsProbe


def issuer_of(settings: Settings, survey: Survey, report: Report, active: Callable[[], bool]) -> Issuer:
    store = Store(settings.tls_dir, settings.deployment)
    ca = None
    if settings.acme_directory_url:
        ca = AcmeCa(settings.acme_directory_url, settings.acme_contact, settings.acme_ca_file, store, store)
    return Issuer(
        Policy.of(settings),
        store,
        ca,
        DnsResolver(settings.acme_dns_server),
        TlsProbe(settings.tls_probe_address),
        report,
        survey,
        active,
        wildcards.load([Path(p) for p in settings.tls_wildcard_files]),
    )
