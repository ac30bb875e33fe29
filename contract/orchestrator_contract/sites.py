"""Director's site events: the site's full desired state (create, update) or a site reference
(delete, restart), with a version that grows with every change.

These models, like the rest of `orchestrator_contract`, are the single source of truth; ``schemas/``
is generated from them (``orchestrator schema export``) and a test keeps the two equal.
"""

from __future__ import annotations

import math
import re
import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, PlainSerializer, model_validator

from orchestrator_contract.base import Model, SiteId
from orchestrator_contract.databases import Database
from orchestrator_contract.env import DATABASE_URL, RESERVED_ENV_KEYS
from orchestrator_contract.hostnames import Hostname, parse_hostname
from orchestrator_contract.images import parse_reference

__all__ = ["SiteId"]

# Bounded so every version fits Docker's int64 labels and our 64-character config names.
MAX_VERSION = 2**63 - 1
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_MEMORY = re.compile(r"([1-9][0-9]{0,12})(Ki|Mi|Gi)", re.ASCII)
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
# Debian's package name rule (Policy 5.6.1), bounded: nothing a shell, apt or a Dockerfile would
# read as anything but a name (no spaces, quotes, `$`, `;`, `=`, `/`, options or versions).
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{0,62}", re.ASCII)
# The contract's own ceiling; the operator's (`MAX_IMAGE_PACKAGES`) is usually lower.
MAX_PACKAGES = 256


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


# Docker refuses a memory limit under 6 MiB; a site asking for less gets a clear answer here.
MIN_MEMORY = 6 * 2**20


def _memory(value: str) -> str:
    if not _MEMORY.fullmatch(value):
        raise ValueError("memory is a positive integer with a unit Ki, Mi or Gi, e.g. 256Mi")
    if memory_bytes(value) < MIN_MEMORY:
        raise ValueError("memory is at least 6Mi (Docker's smallest limit)")
    return value


def _package(name: str) -> str:
    if not _PACKAGE.fullmatch(name):
        raise ValueError("a package is a Debian package name: ^[a-z0-9][a-z0-9+.-]{0,62}$")
    return name


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def memory_bytes(value: str) -> int:
    match = _MEMORY.fullmatch(value)
    if match is None:
        raise ValueError(f"bad quantity {value!r}: a positive integer with a unit Ki, Mi or Gi, e.g. 256Mi")
    return int(match.group(1)) * _UNITS[match.group(2)]


def disk_bytes(value: str) -> int:
    """A disk size as the settings write it: "0" (no limit) or a quantity written as memory's is
    (`512Mi`, `10Gi`)."""
    return 0 if value.strip() == "0" else memory_bytes(value.strip())


Domain = Annotated[str, AfterValidator(parse_hostname), PlainSerializer(str, return_type=str)]
EnvKey = Annotated[str, Field(max_length=128), AfterValidator(_env_key)]
EnvValue = Annotated[str, Field(max_length=32768), AfterValidator(_env_value)]
ImageName = Annotated[str, AfterValidator(parse_reference)]
PackageName = Annotated[str, AfterValidator(_package)]


class SiteKind(StrEnum):
    DYNAMIC = "dynamic"
    STATIC = "static"


class Image(Model):
    name: ImageName
    custom: bool = False


class Resources(Model):
    # Docker's smallest limit; below it nano-CPUs round to 0, which Docker reads as "no limit".
    cpus: Annotated[float, Field(ge=0.01), AfterValidator(_finite)] = 1.0
    memory: Annotated[str, AfterValidator(_memory)] = "256Mi"

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)


class Site(Model):
    id: SiteId
    name: Annotated[str, Field(min_length=1, max_length=255)]
    kind: SiteKind
    domains: Annotated[list[Domain], Field(min_length=1, max_length=100)]
    image: Image | None = Field(default=None, description="Absent: the operator's default base image.")
    resources: Resources = Resources()
    serving: bool = True
    env: dict[EnvKey, EnvValue] = Field(default_factory=dict, max_length=500)
    database: Database | None = Field(
        default=None,
        description="Absent or null: none. Its kind never changes (`database_kind_change`); removed, it is "
        "kept locked for the trash's retention, then dropped with a dump left in the trash.",
    )

    @model_validator(mode="after")
    def _database_url_is_ours(self) -> Site:
        if self.database is not None and DATABASE_URL in self.env:
            raise ValueError("env may not set DATABASE_URL when the site asks for a database: it is the database's")
        return self

    @property
    def hostnames(self) -> tuple[Hostname, ...]:
        # Deduplicated, order kept: the router rule is stable for the same domain set.
        return tuple(dict.fromkeys(Hostname(d) for d in self.domains))


class SiteRef(Model):
    id: SiteId


class ImageRecipe(Model):
    """What a site's custom image is made of: an allowed default image and Debian packages. No
    setup commands: a shell command run as root at build time cannot be made safe here."""

    parent: ImageName = Field(description="One of the operator's allowed default images.")
    packages: Annotated[list[PackageName], Field(max_length=MAX_PACKAGES)] = Field(
        default_factory=list,
        description="Debian package names, installed with their dependencies (at most MAX_IMAGE_PACKAGES).",
    )


def service_name(site_id: int) -> str:
    """The site's swarm service, `site_0042`: the name the product promises."""
    return f"site_{site_id:04d}"


class _Event(Model):
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


class SiteImageRequested(_Event):
    """Build the site's custom image `REGISTRY/site_0042:<version>` from this recipe and push it;
    answered by `site.image_built` (its reference, pinned by digest) or `site.failed`
    (`image_build_failed`). `version` is the image's: it grows with every new recipe of the site,
    and a `site.updated` naming the built reference deploys it."""

    type: Literal["site.image_requested"]
    site: SiteRef
    image: ImageRecipe


SiteUpserted = SiteCreated | SiteUpdated
SiteEvent = Annotated[
    SiteCreated | SiteUpdated | SiteDeleted | SiteRestartRequested | SiteImageRequested, Field(discriminator="type")
]
SITE_EVENT_TYPES = ("site.created", "site.updated", "site.deleted", "site.restart_requested", "site.image_requested")
