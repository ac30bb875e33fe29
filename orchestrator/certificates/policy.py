"""What the issuer needs of the settings (one frozen slice), and the callables it is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from orchestrator.certificates.budget import Limits
from orchestrator.certificates.renewal import Schedule
from orchestrator.config import Settings
from orchestrator.traefik.certificates import certificate_config
from orchestrator_contract.certificates import SiteCertificate
from orchestrator_contract.hostnames import parse_hostname

# What each site's names are now (name -> site id), and where `site.certificate` goes.
Survey = Callable[[], Awaitable[dict[str, int]]]
Report = Callable[[SiteCertificate], Awaitable[None]]


class Probe(Protocol):
    """Traefik's HTTPS entrypoint (`traefik.handshake.TlsProbe`)."""

    async def wait_presented(self, name: str, fingerprint: str, timeout: float) -> bool: ...


@dataclass(frozen=True)
class Policy:
    deployment: str
    https_port: int
    redirect_priority: int
    edge: tuple[str, ...]
    caa_identities: tuple[str, ...]
    limits: Limits
    schedule: Schedule
    wait_seconds: float
    survey_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            deployment=settings.deployment,
            https_port=settings.tls_https_port,
            # Above the sites' own routers, below the challenge responder's.
            redirect_priority=settings.router_priority + 1,
            edge=tuple(settings.acme_edge_addresses),
            caa_identities=tuple(settings.acme_caa_identities),
            limits=Limits(
                orders=settings.acme_orders_per_window,
                orders_window=settings.acme_orders_window_seconds,
                per_domain=settings.acme_certificates_per_domain,
                per_domain_window=settings.acme_certificates_window_seconds,
                failed_per_name=settings.acme_failed_validations_per_name,
            ),
            schedule=Schedule(
                renew_fraction=settings.tls_renew_fraction,
                retry_base=settings.tls_retry_base_seconds,
                retry_max=settings.tls_retry_max_seconds,
            ),
            wait_seconds=settings.tls_wait_seconds,
            survey_seconds=settings.tls_survey_seconds,
        )

    def traefik_file(self, names: list[str], chain_pem: str, key_pem: str) -> str:
        """What Traefik reads to serve a certificate for `names` (and redirect them to HTTPS)."""
        hosts = [parse_hostname(name) for name in names]
        return certificate_config(
            deployment=self.deployment,
            hosts=hosts,
            cert_pem=chain_pem,
            key_pem=key_pem,
            https_port=self.https_port,
            priority=self.redirect_priority,
        )
