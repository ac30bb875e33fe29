"""HTTPS and the certificate issuer (docs/https.md): a group of `Settings`
(orchestrator/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from orchestrator.config.base import CsvList, Group


class HttpsSettings(Group):
    # --- HTTPS --------------------------------------------------------------------------------
    # Every site is also routed on this entrypoint (TLS), with the certificates of its names.
    tls_entrypoint: str = "websecure"
    # The HTTPS port browsers reach (443 in production; the local stack publishes 8443): plain
    # HTTP of a name with a certificate is redirected there (permanently, path and query kept).
    tls_https_port: int = Field(default=8443, ge=1, le=65535)
    # Strict-Transport-Security on every HTTPS answer, in seconds (0: none). A wrong HSTS locks
    # users out of a site for that long: turn it on only once HTTPS works for every domain.
    tls_hsts_seconds: int = Field(default=0, ge=0)
    # The issuer's store, on storage both replicas see: state/ (records, budget, account),
    # traefik/ (what Traefik's file provider reads), http01/ (what the challenge responder serves).
    tls_dir: Path = Path("/var/lib/director-tls")
    # The operator's wildcard certificates: PEM files holding a chain and its key each (e.g.
    # Docker secrets); names one label under a wildcard are served by it, without an order.
    tls_wildcard_files: Annotated[CsvList, Field(default_factory=list)]
    # `site.deployed` waits this long for the certificates of a site's names (each is reported
    # later by `site.certificate` if it takes longer).
    tls_wait_seconds: float = Field(default=30.0, ge=0)
    # Traefik's HTTPS entrypoint, where the issuer checks which certificate is presented.
    tls_probe_address: str = "127.0.0.1:8443"
    # Renewal once this fraction of a certificate's lifetime is left; failures back off from the
    # base, doubling up to the ceiling.
    tls_renew_fraction: float = Field(default=1 / 3, gt=0, lt=1)
    tls_retry_base_seconds: float = Field(default=60.0, gt=0)
    tls_retry_max_seconds: float = Field(default=6 * 3600.0, gt=0)
    # How often the issuer compares its certificates with the sites' names (removed names'
    # certificates go); a site event asks for its own names at once.
    tls_survey_seconds: float = Field(default=300.0, gt=0)
    # --- ACME (empty directory: no certificates are ordered; wildcards are still served) ----------
    # Start with Let's Encrypt's staging directory (https://acme-staging-v02.api.letsencrypt.org/
    # directory), then production's (https://acme-v02.api.letsencrypt.org/directory).
    acme_directory_url: str = ""
    acme_contact: str = ""  # an e-mail address the CA may write to about the account
    # A CA bundle for the ACME API's own TLS (the local stack's pebble); empty: the system's.
    acme_ca_file: Path | None = None
    # The DNS the issuer asks where a name points ("host:port"; empty: the system's resolver) and
    # the addresses (or networks) of this cluster's edge: a name is ordered for only once every
    # address it resolves to is one of these.
    acme_dns_server: str = ""
    acme_edge_addresses: Annotated[CsvList, Field(default_factory=lambda: ["127.0.0.1"])]
    # The CA's CAA identities: a CAA record naming none of them forbids the order.
    acme_caa_identities: Annotated[CsvList, Field(default_factory=lambda: ["letsencrypt.org"])]
    # The rate budget, below Let's Encrypt's limits (300 orders / 3 h per account, 50 new
    # certificates / 7 days per registered domain, 5 failed validations / hour per name).
    acme_orders_per_window: int = Field(default=250, ge=1)
    acme_orders_window_seconds: float = Field(default=3 * 3600.0, gt=0)
    acme_certificates_per_domain: int = Field(default=40, ge=1)
    acme_certificates_window_seconds: float = Field(default=7 * 86400.0, gt=0)
    acme_failed_validations_per_name: int = Field(default=3, ge=1)
