"""The published contract: inbound site events from Director and the result events we publish.

These models are the single source of truth; ``schemas/`` is generated from them
(``orchestrator schema export``) and a test keeps the two equal.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from orchestrator.contract.env import RESERVED_ENV_KEYS
from orchestrator.contract.hostnames import Hostname, parse_hostname
from orchestrator.contract.images import parse_reference
from orchestrator.errors import ErrorCode

SiteId = Annotated[int, Field(ge=1, le=2**31 - 1)]
# Bounded so every version fits Docker's int64 labels and our 64-character config names.
MAX_VERSION = 2**63 - 1
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_MEMORY = re.compile(r"([1-9][0-9]{0,12})(Ki|Mi|Gi)", re.ASCII)
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _env_key(key: str) -> str:
    if not _ENV_KEY.fullmatch(key):
        raise ValueError("env keys are shell identifiers: letters, digits and _, not starting with a digit")
    if key in RESERVED_ENV_KEYS:
        raise ValueError(f"env key is reserved for the orchestrator: {', '.join(sorted(RESERVED_ENV_KEYS))}")
    return key


def _env_value(value: str) -> str:
    # Values may be secrets: messages here must never echo them.
    if "\x00" in value:
        raise ValueError("env values must not contain NUL bytes")
    return value


def _memory(value: str) -> str:
    if not _MEMORY.fullmatch(value):
        raise ValueError("memory is a positive integer with a unit Ki, Mi or Gi, e.g. 256Mi")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def memory_bytes(value: str) -> int:
    match = _MEMORY.fullmatch(value)
    if match is None:
        raise ValueError(f"bad memory quantity {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


Domain = Annotated[str, AfterValidator(parse_hostname), PlainSerializer(str, return_type=str)]
EnvKey = Annotated[str, Field(max_length=128), AfterValidator(_env_key)]
EnvValue = Annotated[str, Field(max_length=32768), AfterValidator(_env_value)]
ImageName = Annotated[str, AfterValidator(parse_reference)]


class _Model(BaseModel):
    # Tolerant reader: unknown fields are ignored so Director can add fields without breaking us.
    model_config = ConfigDict(frozen=True, extra="ignore")


class SiteKind(StrEnum):
    DYNAMIC = "dynamic"
    STATIC = "static"


class Image(_Model):
    name: ImageName
    custom: bool = False


class Resources(_Model):
    # Docker's smallest limit; below it nano-CPUs round to 0, which Docker reads as "no limit".
    cpus: Annotated[float, Field(ge=0.01), AfterValidator(_finite)] = 1.0
    memory: Annotated[str, AfterValidator(_memory)] = "256Mi"

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)


class Site(_Model):
    id: SiteId
    name: Annotated[str, Field(min_length=1, max_length=255)]
    kind: SiteKind
    domains: Annotated[list[Domain], Field(min_length=1, max_length=100)]
    image: Image | None = Field(default=None, description="Absent: the operator's default base image.")
    resources: Resources = Resources()
    serving: bool = True
    env: dict[EnvKey, EnvValue] = Field(default_factory=dict, max_length=500)

    @property
    def hostnames(self) -> tuple[Hostname, ...]:
        # Deduplicated, order kept: the router rule is stable for the same domain set.
        return tuple(dict.fromkeys(Hostname(d) for d in self.domains))


class SiteRef(_Model):
    id: SiteId


class _Event(_Model):
    event_id: uuid.UUID
    occurred_at: AwareDatetime
    version: Version


class SiteCreated(_Event):
    """The site exists in Director with this full desired state (upsert)."""

    type: Literal["site.created"]
    site: Site


class SiteUpdated(_Event):
    """The site changed in Director; carries the full desired state, never a delta (upsert)."""

    type: Literal["site.updated"]
    site: Site


class SiteDeleted(_Event):
    """The site was deleted in Director: remove its service, keep its files in the trash."""

    type: Literal["site.deleted"]
    site: SiteRef


class SiteRestartRequested(_Event):
    """The site's owner asked for a restart: fresh tasks of the same spec, health-gated as a deploy.
    `version` is the site's current version in Director; the applied version does not change."""

    type: Literal["site.restart_requested"]
    site: SiteRef


SiteUpserted = SiteCreated | SiteUpdated
InboundEvent = Annotated[SiteCreated | SiteUpdated | SiteDeleted | SiteRestartRequested, Field(discriminator="type")]
INBOUND_TYPES = ("site.created", "site.updated", "site.deleted", "site.restart_requested")


# --- results ------------------------------------------------------------------------------------


class ServiceRef(_Model):
    name: str
    id: str
    replicas: int


class ErrorInfo(_Model):
    code: ErrorCode = Field(description="Machine-readable error code.")
    message: str
    retryable: bool = Field(description="Whether a replay of the same event may succeed.")


class Probe(_Model):
    """What was verified before `site.deployed`: a request through Traefik answered by the site."""

    url: str = Field(description="The Traefik entrypoint the request went to.")
    host: str = Field(description="The Host header sent (one of the site's domains).")
    status: int = Field(description="The HTTP status the site answered with.")
    duration_ms: float = Field(description="How long the answer took.")
    checked_at: AwareDatetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="When it was checked (a redelivered event may report an earlier check of the same tasks).",
    )


# --- health after deploy -------------------------------------------------------------------------

HealthStatus = Literal["healthy", "unhealthy", "down"]


class SiteHealth(_Model):
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

DriftKind = Literal["edited", "tombstoned", "unmanaged_dir", "old_trash"]


class Drift(_Model):
    """Something in the swarm or the sites root that is not what the orchestrator applied.

    `edited`: a service's spec no longer matches what was applied (changed by hand);
    `tombstoned`: a service of a site that was deleted; `unmanaged_dir`: a site directory with no
    service; `old_trash`: a deleted site's files kept longer than the configured age.
    """

    kind: DriftKind
    subject: str = Field(description="The service name or the path under the sites root.")
    site_id: int | None = None
    detail: str


class DriftReport(_Model):
    """Periodic, on `orchestrator.results` with routing key `orchestrator.drift`, when there is any."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: Literal["orchestrator.drift"] = "orchestrator.drift"
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    drift: list[Drift]


# --- terminals ------------------------------------------------------------------------------------
# Director bridges a browser's websocket to the bus: commands on `director.terminals` (routing key
# = command type), events back on `orchestrator.terminals` with routing key `terminal.<session_id>`.

# Bytes typed in one `terminal.input`; Director splits a larger paste.
MAX_TERMINAL_INPUT = 16 * 1024
Dimension = Annotated[int, Field(ge=1, le=1000)]


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("data is standard base64") from None
    return value


def _input_size(value: str) -> str:
    if len(base64.b64decode(value)) > MAX_TERMINAL_INPUT:
        raise ValueError(f"at most {MAX_TERMINAL_INPUT} bytes of input per message")
    return value


Base64Data = Annotated[str, AfterValidator(_base64), Field(json_schema_extra={"contentEncoding": "base64"})]


class _Command(_Model):
    session_id: uuid.UUID = Field(description="Chosen by Director for the session (a UUID).")


class TerminalOpen(_Command):
    """Open a shell in the site's image with the site directory at /site."""

    type: Literal["terminal.open"] = "terminal.open"
    site_id: SiteId
    cols: Dimension = 80
    rows: Dimension = 24


class TerminalInput(_Command):
    """Bytes typed by the user (base64), delivered to the shell in order."""

    type: Literal["terminal.input"] = "terminal.input"
    data: Annotated[Base64Data, Field(max_length=4 * ((MAX_TERMINAL_INPUT + 2) // 3)), AfterValidator(_input_size)]

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.data)


class TerminalResize(_Command):
    type: Literal["terminal.resize"] = "terminal.resize"
    cols: Dimension
    rows: Dimension


class TerminalClose(_Command):
    type: Literal["terminal.close"] = "terminal.close"


TerminalCommand = TerminalOpen | TerminalInput | TerminalResize | TerminalClose
TERMINAL_COMMANDS: dict[str, type[TerminalCommand]] = {
    "terminal.open": TerminalOpen,
    "terminal.input": TerminalInput,
    "terminal.resize": TerminalResize,
    "terminal.close": TerminalClose,
}

TerminalEventType = Literal["opened", "output", "closed", "failed"]


class TerminalEvent(_Model):
    """What happened in a session, published with routing key `terminal.<session_id>`.

    `seq` counts a session's events from 0 in publish order: output is delivered in order, and a
    gap means a message was lost (terminal events are not persistent).
    """

    session_id: uuid.UUID
    type: TerminalEventType
    seq: int = Field(ge=0)
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    data: Base64Data | None = Field(default=None, description="`output`: bytes from the terminal, base64.")
    reason: str | None = Field(default=None, description="`closed` and `failed`: why.")
    code: ErrorCode | None = Field(default=None, description="`failed`: machine-readable code.")

    @property
    def routing_key(self) -> str:
        return f"terminal.{self.session_id}"


ResultType = Literal["site.deployed", "site.removed", "site.failed", "site.stale"]


class ResultEvent(_Model):
    """What the orchestrator did with one inbound event (routing key = `type`).

    `site.deployed` of a serving site means it answered through Traefik (see `probe`).
    `site.stale` means the event was older than what the swarm already holds and changed nothing.
    Results are delivered at least once: deduplicate by `causation_id`.
    """

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: ResultType
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
    note: str | None = Field(default=None, description="Anything else the site's owner should know.")


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
) -> ResultEvent:
    return ResultEvent(
        type="site.failed",
        causation_id=causation_id,
        site_id=site_id,
        version=version,
        applied_version=applied_version,
        error=ErrorInfo(code=code, message=message, retryable=retryable),
        rolled_back=rolled_back,
    )
