"""What the orchestrator publishes about a site's HTTPS: a `site.certificate` per domain when its
certificate changes, and the `tls` part of `site.deployed`.

Every domain of a site is served on the HTTPS entrypoint. A domain is *served* once Traefik
presents a certificate valid for it (checked by a TLS handshake through Traefik, not assumed from
the CA's answer); until then it is *pending*, with the reason. Private keys never appear here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from orchestrator_contract.base import Model, SiteId


class CertificateErrorCode(StrEnum):
    """Why a domain has no certificate (yet). Part of the published contract."""

    # Its A/AAAA records are missing or name addresses other than this cluster's: no order is
    # placed (a validation bound to fail would count against the CA's limits).
    DNS_NOT_POINTED = "dns_not_pointed"
    # A CAA record of the domain (or a parent) names other CAs only.
    CAA_FORBIDS = "caa_forbids"
    # The CA refused the order for its rate limits (`retry_at`: when it said to come back).
    RATE_LIMITED = "rate_limited"
    # The CA could not validate the challenge (it reached something else, or nothing).
    VALIDATION_FAILED = "validation_failed"
    # A wildcard needs DNS-01, which is the operator's business: only the operator's wildcard
    # certificates (ORCHESTRATOR_TLS_WILDCARD_FILES) serve wildcards.
    WILDCARD_NEEDS_DNS = "wildcard_needs_dns"
    # The CA does not issue for this name (an IP address, a name its policy refuses).
    NOT_ISSUABLE = "not_issuable"
    # The CA did not answer, or answered with an error of its own; retried with backoff.
    CA_UNAVAILABLE = "ca_unavailable"
    # No ACME directory is configured (ORCHESTRATOR_ACME_DIRECTORY_URL): only the operator's
    # wildcard certificates are served.
    NO_ISSUER = "no_issuer"


class CertificateError(Model):
    code: CertificateErrorCode
    message: str
    retryable: bool = Field(description="Whether the orchestrator tries again by itself (see `retry_at`).")


CertificateStatus = Literal["issued", "renewed", "queued", "failed", "expiring", "removed"]


class SiteCertificate(Model):
    """A domain's certificate changed (routing key `site.certificate`), one event per domain.

    `issued`: first served with a certificate valid until `not_after`; `renewed`: a new one took
    over without a gap; `queued`: the order waits for the CA's rate-limit budget until `retry_at`;
    `failed`: no certificate, see `error` (retried by itself at `retry_at` when `retryable`);
    `expiring`: renewal keeps failing and the certificate in service ends at `not_after`;
    `removed`: the domain left its site and its certificate is no longer served.
    Delivered at least once: deduplicate by `event_id`.
    """

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: Literal["site.certificate"] = "site.certificate"
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    site_id: SiteId | None = Field(description="The site the domain belongs (or belonged) to.")
    domain: str
    status: CertificateStatus
    not_after: AwareDatetime | None = Field(default=None, description="End of the certificate in service.")
    retry_at: AwareDatetime | None = Field(default=None, description="When the next attempt is due.")
    error: CertificateError | None = None


class PendingDomain(Model):
    domain: str
    status: Literal["issuing", "queued", "failed"] = Field(
        description="`issuing`: an order is under way; `queued`: it waits for the rate-limit budget; "
        "`failed`: see `error`."
    )
    retry_at: AwareDatetime | None = None
    error: CertificateError | None = None


class ServedDomain(Model):
    domain: str
    not_after: AwareDatetime
    wildcard: bool = Field(default=False, description="Served by the operator's wildcard certificate.")


class SiteTls(Model):
    """In `site.deployed`: which of the site's domains HTTPS serves with a valid certificate now,
    and which not yet (each later gets its `site.certificate`)."""

    served: list[ServedDomain]
    pending: list[PendingDomain]
