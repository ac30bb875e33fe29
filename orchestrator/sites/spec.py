"""Pure: what an event means for the swarm. A site event becomes a `ServiceSpec`, no I/O here."""

from __future__ import annotations

from pathlib import PurePath

from orchestrator.config import Settings
from orchestrator.labels import (
    DEPLOYMENT,
    DOMAINS,
    KIND,
    MANAGED_BY,
    MANAGER,
    SITE_ID,
    VERSION,
)
from orchestrator.sites.domains import claim_labels
from orchestrator.sites.policy import check_domains, clamp_resources, resolve_image
from orchestrator.sites.scripts import HEALTH_PROBE, NGINX_START, RUN_SCRIPT
from orchestrator.sites.service import NANOSECONDS, HealthCheck, Mount, ServiceSpec, with_fingerprint
from orchestrator.traefik import labels as traefik
from orchestrator_contract.env import SITE_MOUNT, site_env
from orchestrator_contract.sites import Site, SiteKind, service_name

# Static sites: nginx serves /site/public from the site directory mounted read-only at /site.
# Mounting `public/` itself would let Docker resolve a link the site planted there on the host
# (at every task start, long after our check); inside the container it resolves harmlessly.
# The configuration travels in the environment and is written to tmpfs at start, so any nginx
# image with a shell works (the official one and the local stack's). nginx runs as the site's
# user, so there is no `user` directive and everything it writes is under /tmp.
NGINX_CONF = """\
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr;
events { worker_connections 512; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log /dev/stdout;
  server_tokens off;
  client_body_temp_path /tmp/client_body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  server {
    listen PORT default_server;
    root /site/public;
    index index.html;
    location / { try_files $uri $uri/ =404; }
  }
}
"""


def site_uid(site_id: int, settings: Settings) -> int:
    """The uid (and gid) a site's tasks run as and its directory belongs to."""
    return settings.site_uid_base + site_id


def desired_service(site: Site, version: int, settings: Settings, site_dir: PurePath) -> ServiceSpec:
    """The service that makes the swarm match `site` at `version`.

    Raises ImageNotAllowed / DomainNotAllowed when policy refuses the site.
    """
    name = service_name(site.id)
    hosts = site.hostnames
    check_domains(hosts, settings)
    limits = clamp_resources(site.resources, settings)
    labels = traefik.labels(
        router=name,
        hosts=hosts,
        network=settings.network,
        port=settings.site_port,
        entrypoint=settings.traefik_entrypoint,
        priority=settings.router_priority,
    )
    labels |= claim_labels(hosts) | {
        MANAGED_BY: MANAGER,
        DEPLOYMENT: settings.deployment,
        SITE_ID: str(site.id),
        VERSION: str(version),
        DOMAINS: ",".join(hosts),
        KIND: site.kind.value,
    }
    env = site_env(
        site.id,
        settings.site_port,
        drain_seconds=settings.drain_seconds,
        stable_seconds=settings.stable_seconds,
        health_idle_seconds=settings.health_idle_seconds,
        health_timeout_seconds=settings.health_timeout_seconds,
        # Past the start period, the stability window and the probes on either side of it.
        health_young_seconds=settings.health_start_period_seconds
        + settings.stable_seconds
        + 2 * settings.health_timeout_seconds
        + settings.health_interval_seconds,
    )
    uid = site_uid(site.id, settings)
    tmpfs = (Mount(target="/tmp", type="tmpfs"), Mount(target="/run", type="tmpfs"))
    common = dict(
        name=name,
        labels=labels,
        network=settings.network,
        replicas=1 if site.serving else 0,
        nano_cpus=limits.nano_cpus,
        memory_bytes=limits.memory_bytes,
        user=f"{uid}:{uid}",
        cap_add=tuple(settings.cap_add),
        pids_limit=settings.pids_limit,
        healthcheck=HealthCheck(
            command=HEALTH_PROBE,
            interval_ns=round(settings.health_interval_seconds * NANOSECONDS),
            # A steady probe may ask, rest `health_idle_seconds`, and ask again (see `sites.scripts`).
            timeout_ns=round((settings.health_idle_seconds + 2 * settings.health_timeout_seconds + 1) * NANOSECONDS),
            start_period_ns=round(settings.health_start_period_seconds * NANOSECONDS),
            retries=settings.health_retries,
        ),
        constraints=placement(settings),
        log_options={"max-size": settings.log_max_size, "max-file": str(settings.log_max_files)},
        update_delay_ns=round(settings.update_delay_seconds * NANOSECONDS),
        update_monitor_ns=round(settings.update_monitor_seconds * NANOSECONDS),
        restart_delay_ns=round(settings.restart_delay_seconds * NANOSECONDS),
        restart_max_attempts=settings.restart_max_attempts,
        restart_window_ns=round(settings.restart_window_seconds * NANOSECONDS),
        # The drain comes out of the grace period: the server still gets the rest to shut down.
        stop_grace_ns=round((settings.stop_grace_seconds + settings.drain_seconds) * NANOSECONDS),
    )
    if site.kind is SiteKind.STATIC:
        spec = ServiceSpec(
            image=settings.static_image,
            command=("/bin/sh", "-c", NGINX_START),
            env={"NGINX_CONF": NGINX_CONF.replace("PORT", str(settings.site_port)), **env},
            mounts=(Mount(source=str(site_dir), target=SITE_MOUNT, read_only=True), *tmpfs),
            **common,  # type: ignore[arg-type]
        )
    else:
        spec = ServiceSpec(
            image=resolve_image(site.image, site.id, settings),
            command=("/bin/sh", "-c", RUN_SCRIPT),
            env={**site.env, **env},
            mounts=(Mount(source=str(site_dir), target=SITE_MOUNT), *tmpfs),
            **common,  # type: ignore[arg-type]
        )
    return with_fingerprint(spec)


def placement(settings: Settings) -> tuple[str, ...]:
    """Swarm constraints of every site task: a node with the sites root, and the operator's own."""
    own = f"node.labels.{settings.site_node_label}==true" if settings.site_node_label else None
    return tuple(dict.fromkeys(c for c in (own, *settings.placement_constraints) if c))
