"""What the operator allows: images, domains and resource ceilings. Pure checks over settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.config import Settings
from orchestrator.errors import DomainNotAllowed, ImageNotAllowed
from orchestrator.sites.domains import reserved_by
from orchestrator_contract.hostnames import Hostname
from orchestrator_contract.images import parse_reference, repository_of, with_default_tag
from orchestrator_contract.sites import Image, Resources, memory_bytes, service_name


def resolve_image(image: Image | None, site_id: int, settings: Settings) -> str:
    """The reference a site may run, or ImageNotAllowed.

    No image: the configured default. Default images must be on the allow-list. Custom images come
    from the configured registry and from the site's own namespace there, so no tenant runs
    another's private image: `REGISTRY/site_0042` and what lies under `REGISTRY/site_0042/`. A bare
    name is read inside that namespace (`app:1` is `REGISTRY/site_0042/app:1`); a name pinned by
    digest (`...@sha256:...`) anywhere in the registry is Director's own choice and is kept.
    """
    if image is None:
        return settings.default_image
    if not image.custom:
        allowed = {with_default_tag(name) for name in settings.allowed_default_images}
        if with_default_tag(image.name) not in allowed:
            raise ImageNotAllowed(f"image {image.name!r} is not an allowed default image")
        return image.name
    registry = settings.registry.rstrip("/")
    namespace = service_name(site_id)
    name = image.name
    if not name.startswith(registry + "/"):
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            raise ImageNotAllowed(f"custom images come only from {settings.registry}")
        inside = name == namespace or name.startswith((namespace + "/", namespace + ":", namespace + "@"))
        name = f"{registry}/{name}" if inside else f"{registry}/{namespace}/{name}"
    try:
        reference = parse_reference(name)
    except ValueError:
        raise ImageNotAllowed(f"custom image {image.name[:64]!r} is not a valid name in {settings.registry}") from None
    repository = repository_of(reference)[len(registry) + 1 :]
    if "@sha256:" in reference or repository == namespace or repository.startswith(namespace + "/"):
        return reference
    raise ImageNotAllowed(f"custom image {image.name[:64]!r} is not in this site's namespace {registry}/{namespace}")


def check_domains(hosts: Sequence[Hostname], settings: Settings) -> None:
    if len(hosts) > settings.max_domains_per_site:
        raise DomainNotAllowed(f"a site has at most {settings.max_domains_per_site} domains, not {len(hosts)}")
    suffixes = [s.lower().strip(".") for s in settings.allowed_domain_suffixes]
    reserved = [r.lower().strip(".") for r in settings.reserved_domains]
    for host in hosts:
        if (name := reserved_by(host, reserved)) is not None:
            raise DomainNotAllowed(f"domain {host} touches {name}, which is reserved")
        if host.is_wildcard and not settings.allow_wildcard_domains:
            raise DomainNotAllowed(f"wildcard domain {host} is not allowed")
        if host.is_ip and not settings.allow_ip_domains:
            raise DomainNotAllowed(f"IP address {host} is not allowed as a domain")
        if suffixes and not any(host == s or host.endswith("." + s) for s in suffixes):
            raise DomainNotAllowed(f"domain {host} is outside the allowed suffixes {', '.join(suffixes)}")


@dataclass(frozen=True)
class Limits:
    nano_cpus: int
    memory_bytes: int


def clamp_resources(resources: Resources, settings: Settings) -> Limits:
    """Limits within the operator's ceilings. A request above a ceiling gets the ceiling (documented)."""
    cpus = min(resources.cpus, settings.max_cpus)
    memory = min(resources.memory_bytes, memory_bytes(settings.max_memory))
    return Limits(nano_cpus=round(cpus * 1e9), memory_bytes=memory)
