"""Small frozen parts of `Settings` for pure code, each built from Settings here and nowhere else:
a decision takes only the few values it reads, so a test builds one in a line and a reader sees
what the decision depends on."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config import DatabaseServer, Settings
from orchestrator_contract.images import is_pinned, known_names, with_default_tag
from orchestrator_contract.sites import memory_bytes

NANOSECONDS = 1_000_000_000


@dataclass(frozen=True)
class Admission:
    """What the operator admits of a site: domains, resources, images (`sites.admission`)."""

    max_domains: int
    domain_suffixes: tuple[str, ...]  # lower case, no dots at either end; none: any
    reserved_domains: tuple[str, ...]
    allow_wildcard_domains: bool
    allow_ip_domains: bool
    max_cpus: float
    max_memory_bytes: int
    default_image: str  # as it runs: pinned by digest (`unpinned_default_images`)
    allowed_default_images: tuple[str, ...]  # likewise; Director asks for one by a `known_names` name
    static_image: str
    registry: str  # custom images come from here, as configured
    max_image_packages: int
    build_tools_image: str
    database_servers: tuple[DatabaseServer, ...]  # where a new site database may go

    def allowed_default_image(self, name: str) -> str | None:
        """The allowed default image Director names `name` (`director/base:latest`, `director/base`,
        or in full), as it runs; None: not one."""
        wanted = with_default_tag(name)
        return next((image for image in self.allowed_default_images if wanted in known_names(image)), None)

    @classmethod
    def of(cls, settings: Settings) -> Admission:
        return cls(
            max_domains=settings.max_domains_per_site,
            domain_suffixes=tuple(s.lower().strip(".") for s in settings.allowed_domain_suffixes),
            reserved_domains=tuple(r.lower().strip(".") for r in settings.reserved_domains),
            allow_wildcard_domains=settings.allow_wildcard_domains,
            allow_ip_domains=settings.allow_ip_domains,
            max_cpus=settings.max_cpus,
            max_memory_bytes=memory_bytes(settings.max_memory),
            default_image=settings.default_image,
            allowed_default_images=tuple(settings.allowed_default_images),
            static_image=settings.static_image,
            registry=settings.registry,
            max_image_packages=settings.max_image_packages,
            build_tools_image=settings.build_tools_image,
            database_servers=tuple(settings.database_servers),
        )


@dataclass(frozen=True)
class SiteRuntime:
    """How every site service runs, whatever the site (`sites.spec`). Times in nanoseconds, as
    the Engine takes them."""

    network: str
    port: int
    entrypoint: str
    router_priority: int
    tls_entrypoint: str
    hsts_seconds: int
    deployment: str
    uid_base: int
    cap_add: tuple[str, ...]
    pids_limit: int
    constraints: tuple[str, ...]
    log_options: tuple[tuple[str, str], ...]
    # The site's own environment: its port, the drain and the health probe's timings, in seconds.
    drain_seconds: float
    stable_seconds: float
    health_idle_seconds: float
    health_timeout_seconds: float
    health_young_seconds: float
    health_interval_ns: int
    health_start_period_ns: int
    health_retries: int
    update_delay_ns: int
    update_monitor_ns: int
    restart_delay_ns: int
    restart_max_attempts: int
    restart_window_ns: int
    stop_grace_ns: int

    @classmethod
    def of(cls, settings: Settings) -> SiteRuntime:
        return cls(
            network=settings.network,
            port=settings.site_port,
            entrypoint=settings.traefik_entrypoint,
            router_priority=settings.router_priority,
            tls_entrypoint=settings.tls_entrypoint,
            hsts_seconds=settings.tls_hsts_seconds,
            deployment=settings.deployment,
            uid_base=settings.site_uid_base,
            cap_add=tuple(settings.cap_add),
            pids_limit=settings.pids_limit,
            constraints=placement(settings.site_node_label, settings.placement_constraints),
            log_options=(("max-size", settings.log_max_size), ("max-file", str(settings.log_max_files))),
            drain_seconds=settings.drain_seconds,
            stable_seconds=settings.stable_seconds,
            health_idle_seconds=settings.health_idle_seconds,
            health_timeout_seconds=settings.health_timeout_seconds,
            # Past the start period, the stability window and the probes on either side of it.
            health_young_seconds=settings.health_start_period_seconds
            + settings.stable_seconds
            + 2 * settings.health_timeout_seconds
            + settings.health_interval_seconds,
            health_interval_ns=_ns(settings.health_interval_seconds),
            health_start_period_ns=_ns(settings.health_start_period_seconds),
            health_retries=settings.health_retries,
            update_delay_ns=_ns(settings.update_delay_seconds),
            update_monitor_ns=_ns(settings.update_monitor_seconds),
            restart_delay_ns=_ns(settings.restart_delay_seconds),
            restart_max_attempts=settings.restart_max_attempts,
            restart_window_ns=_ns(settings.restart_window_seconds),
            # The drain comes out of the grace period: the server still gets the rest to shut down.
            stop_grace_ns=_ns(settings.stop_grace_seconds + settings.drain_seconds),
        )


def unpinned_default_images(settings: Settings) -> list[str]:
    """The default images (DEFAULT_IMAGE, STATIC_IMAGE, each of ALLOWED_DEFAULT_IMAGES) not written
    in full and pinned by digest: `orchestrator run` refuses to start with any."""
    images = {"DEFAULT_IMAGE": [settings.default_image], "STATIC_IMAGE": [settings.static_image]}
    images["ALLOWED_DEFAULT_IMAGES"] = list(settings.allowed_default_images)
    return [f"{setting}={image!r}" for setting, values in images.items() for image in values if not is_pinned(image)]


def placement(site_node_label: str, constraints: list[str]) -> tuple[str, ...]:
    """Swarm constraints of every site task: a node with the sites root, and the operator's own."""
    own = f"node.labels.{site_node_label}==true" if site_node_label else None
    return tuple(dict.fromkeys(c for c in (own, *constraints) if c))


def _ns(seconds: float) -> int:
    return round(seconds * NANOSECONDS)
