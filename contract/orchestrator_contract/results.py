"""What the orchestrator publishes about sites: the result of each site event, health changes after
deploy, and drift reports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, Field

from orchestrator_contract.base import Model, SiteId
from orchestrator_contract.certificates import SiteTls
from orchestrator_contract.codes import ErrorCode

SiteResultType = Literal["site.deployed", "site.removed", "site.failed", "site.stale", "site.image_built"]


class SiteResult(Model):
    """What the orchestrator did with one inbound event (routing key = `type`).

    `site.deployed` of a serving site means it answered through Traefik (see `probe`).
    `site.stale` means the event was older than what the swarm already holds and changed nothing.
    `site.image_built` answers a `site.image_requested`: `image` names what was pushed, and
    `version` is the image's version.
    Results are delivered at least once: deduplicate by `causation_id`.
    """

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: SiteResultType
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    causation_id: uuid.UUID | None = Field(description="event_id of the inbound event; null if unreadable")
    site_id: int | None
    version: int | None
    applied_version: int | None = Field(
        default=None, description="The version the swarm holds after this event (null: nothing applied)."
    )
    service: ServiceRef | None = None
    error: ErrorInfo | None = None
    rolled_back: bool = Field(
        default=False, description="A failed update was rolled back: the previous version keeps serving."
    )
    probe: Probe | None = Field(default=None, description="For `site.deployed` of a serving site: what was verified.")
    tls: SiteTls | None = Field(
        default=None,
        description="For `site.deployed`: which domains HTTPS serves with a valid certificate, which not yet.",
    )
    note: str | None = Field(default=None, description="Anything else the site's owner should know.")
    image: str | None = Field(
        default=None,
        description="For `site.image_built`: the image pushed, pinned by digest (`REGISTRY/site_0042:3@sha256:...`), "
        "for a `site.updated` to name.",
    )


def failed(
    *,
    causation_id: uuid.UUID | None,
    site_id: int | None,
    version: int | None,
    code: ErrorCode,
    message: str,
    retryable: bool,
    rolled_back: bool = False,
    applied_version: int | None = None,
) -> SiteResult:
    return SiteResult(
        type="site.failed",
        causation_id=causation_id,
        site_id=site_id,
        version=version,
        applied_version=applied_version,
        error=ErrorInfo(code=code, message=message, retryable=retryable),
        rolled_back=rolled_back,
    )


class ServiceRef(Model):
    name: str
    id: str
    replicas: int


class ErrorInfo(Model):
    code: ErrorCode = Field(description="Machine-readable error code.")
    message: str
    retryable: bool = Field(description="Whether a replay of the same event may succeed.")


class Probe(Model):
    """What was verified before `site.deployed`: a request through Traefik answered by the site."""

    url: str = Field(
        description="The Traefik entrypoint the request went to (the HTTPS one when Traefik redirects the name there)."
    )
    host: str = Field(description="The Host header sent (one of the site's domains).")
    status: int = Field(description="The HTTP status the site answered with.")
    duration_ms: float = Field(description="How long the answer took.")
    checked_at: AwareDatetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When it was checked (a redelivered event may report an earlier check of the same tasks).",
    )


# --- health after deploy -------------------------------------------------------------------------

HealthStatus = Literal["healthy", "unhealthy", "down"]


class SiteHealth(Model):
    """A deployed site's health changed (routing key `site.health`): published once per change.

    `down`: no task answers; `unhealthy`: fewer tasks answer than should, or a health check is
    failing; `healthy`: every task answers again. Sites not serving (replicas 0) are not watched.
    """

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: Literal["site.health"] = "site.health"
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    site_id: SiteId
    status: HealthStatus
    since: AwareDatetime = Field(description="When the site entered this status (as first noticed).")
    detail: str


# --- drift ---------------------------------------------------------------------------------------

DriftKind = Literal["edited", "tombstoned", "unmanaged_dir", "old_trash", "orphan_database", "missing_database"]


class Drift(Model):
    """Something in the swarm or the sites root that is not what the orchestrator applied.

    `edited`: a service's spec no longer matches what was applied (changed by hand);
    `tombstoned`: a service of a site that was deleted; `unmanaged_dir`: a site directory with no
    service; `old_trash`: a deleted site's files kept longer than the configured age;
    `orphan_database`: a site database (subject `<server>/site_0042`) no site's service names,
    not retired; `missing_database`: a site's service names a database its server does not have.
    """

    kind: DriftKind
    subject: str = Field(description="The service name or the path under the sites root.")
    site_id: int | None = None
    detail: str


class DriftReport(Model):
    """Periodic, on `orchestrator.results` with routing key `orchestrator.drift`, when there is any."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: Literal["orchestrator.drift"] = "orchestrator.drift"
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    drift: list[Drift]
