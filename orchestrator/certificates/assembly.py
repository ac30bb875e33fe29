"""The issuer as `orchestrator run` builds it from the settings: the store, the CA (none without
an ACME directory), the DNS, Traefik's HTTPS entrypoint, the operator's wildcards."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from orchestrator.certificates import wildcards
from orchestrator.certificates.ca import AcmeCa
from orchestrator.certificates.issuer import Issuer
from orchestrator.certificates.policy import Policy, Report, Survey
from orchestrator.certificates.resolver import DnsResolver
from orchestrator.certificates.store import Store
from orchestrator.config import Settings
from orchestrator.labels import DEPLOYMENT
from orchestrator.logging_setup import fields
from orchestrator.sites.service import Service
from orchestrator.traefik.handshake import TlsProbe
from orchestrator_contract.certificates import SiteCertificate

log = logging.getLogger("orchestrator.certificates")


class Services(Protocol):
    """The swarm (`swarm.services.Swarm`): the services the orchestrator manages."""

    async def managed(self) -> Sequence[Service]: ...


def issuer_of(
    settings: Settings, services: Services, report: Callable[..., Awaitable[bool]], active: Callable[[], bool]
) -> Issuer:
    """`report(mandatory, event)`: the results publisher; `active`: this replica gets Director's events."""
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
        _reporter(report),
        _survey(services, settings.deployment),
        active,
        wildcards.load([Path(p) for p in settings.tls_wildcard_files]),
    )


def _survey(services: Services, deployment: str) -> Survey:
    """Each name of this deployment's sites, and its site."""

    async def survey() -> dict[str, int]:
        return {
            name: service.site_id
            for service in await services.managed()
            if service.labels.get(DEPLOYMENT) == deployment and service.site_id is not None
            for name in service.domains
        }

    return survey


def _reporter(report: Callable[..., Awaitable[bool]]) -> Report:
    async def publish(event: SiteCertificate) -> None:
        if not await report(True, event):
            log.warning("a site.certificate was not taken by the broker", extra=fields(domain=event.domain))

    return publish
