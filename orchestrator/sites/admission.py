"""Admission: a site event's site as the operator's policy admits it, in one pure step, before any
spec is built. `admit` checks the domains, clamps the resources, resolves the image and reads the
domain claims once, and returns an `Admitted` site the spec is built from, or raises a typed
refusal (`NotAdmitted`: DomainNotAllowed, ImageNotAllowed, DatabaseKindChange, DatabaseNotOffered).

What a site asks of the platform besides its service (a database, certificates) is admitted here
too: another check in `admit`, another field of `Admitted`, another `NotAdmitted` refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.errors import DomainNotAllowed, ImageNotAllowed
from orchestrator.sites.databases import Grant, desired_grant
from orchestrator.sites.domains import Claims, claims_of, reserved_by
from orchestrator.slices import Admission
from orchestrator_contract.hostnames import Hostname
from orchestrator_contract.images import parse_reference, repository_of
from orchestrator_contract.sites import Image, Resources, Site, SiteKind, service_name


@dataclass(frozen=True)
class Limits:
    nano_cpus: int
    memory_bytes: int


@dataclass(frozen=True)
class Admitted:
    """A site the policy admits, with what admission decided: the one input of its spec."""

    site: Site
    hosts: tuple[Hostname, ...]
    claims: Claims
    limits: Limits
    image: str  # the reference its tasks run
    database: Grant | None = None  # the database handed to its tasks (`sites.databases`)


def admit(site: Site, policy: Admission, database: Grant | None = None) -> Admitted:
    """The site as admitted, or a `NotAdmitted` refusal (DomainNotAllowed, ImageNotAllowed,
    DatabaseKindChange, DatabaseNotOffered) saying why not. `database`: the one its service holds."""
    hosts = tuple(site.hostnames)
    check_domains(hosts, policy)
    image = policy.static_image if site.kind is SiteKind.STATIC else resolve_image(site.image, site.id, policy)
    grant = desired_grant(site.id, site.database, database, policy.database_servers)
    return Admitted(site, hosts, claims_of(hosts), clamp_resources(site.resources, policy), image, grant)


def resolve_image(image: Image | None, site_id: int, policy: Admission) -> str:
    """The reference a site may run, or ImageNotAllowed.

    No image: the configured default. A default image must be on the allow-list, and runs as
    written there: in full and pinned by digest (never a tag a registry may move, never Docker
    Hub's). Custom images come
    from the configured registry and from the site's own namespace there, so no tenant runs
    another's private image: `REGISTRY/site_0042` and what lies under `REGISTRY/site_0042/`. A bare
    name is read inside that namespace (`app:1` is `REGISTRY/site_0042/app:1`); a name pinned by
    digest (`...@sha256:...`) anywhere in the registry is Director's own choice and is kept.
    """
    if image is None:
        return policy.default_image
    if not image.custom:
        if (allowed := policy.allowed_default_image(image.name)) is None:
            raise ImageNotAllowed(f"image {image.name!r} is not an allowed default image")
        return allowed
    registry = policy.registry.rstrip("/")
    namespace = service_name(site_id)
    name = image.name
    if not name.startswith(registry + "/"):
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            raise ImageNotAllowed(f"custom images come only from {policy.registry}")
        inside = name == namespace or name.startswith((namespace + "/", namespace + ":", namespace + "@"))
        name = f"{registry}/{name}" if inside else f"{registry}/{namespace}/{name}"
    try:
        reference = parse_reference(name)
    except ValueError:
        raise ImageNotAllowed(f"custom image {image.name[:64]!r} is not a valid name in {policy.registry}") from None
    repository = repository_of(reference)[len(registry) + 1 :]
    if "@sha256:" in reference or repository == namespace or repository.startswith(namespace + "/"):
        return reference
    raise ImageNotAllowed(f"custom image {image.name[:64]!r} is not in this site's namespace {registry}/{namespace}")


def check_domains(hosts: Sequence[Hostname], policy: Admission) -> None:
    if len(hosts) > policy.max_domains:
        raise DomainNotAllowed(f"a site has at most {policy.max_domains} domains, not {len(hosts)}")
    suffixes = policy.domain_suffixes
    for host in hosts:
        if (name := reserved_by(host, policy.reserved_domains)) is not None:
            raise DomainNotAllowed(f"domain {host} touches {name}, which is reserved")
        if host.is_wildcard and not policy.allow_wildcard_domains:
            raise DomainNotAllowed(f"wildcard domain {host} is not allowed")
        if host.is_ip and not policy.allow_ip_domains:
            raise DomainNotAllowed(f"IP address {host} is not allowed as a domain")
        if suffixes and not any(host == s or host.endswith("." + s) for s in suffixes):
            raise DomainNotAllowed(f"domain {host} is outside the allowed suffixes {', '.join(suffixes)}")


def clamp_resources(resources: Resources, policy: Admission) -> Limits:
    """Limits within the operator's ceilings. A request above a ceiling gets the ceiling (documented)."""
    cpus = min(resources.cpus, policy.max_cpus)
    memory = min(resources.memory_bytes, policy.max_memory_bytes)
    return Limits(nano_cpus=round(cpus * 1e9), memory_bytes=memory)
