"""Pure: what an admitted site means for the swarm. An `Admitted` site (see `sites.admission`)
becomes a `ServiceSpec`, no I/O here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePath
from typing import Any

from orchestrator.labels import (
    DATABASE,
    DEPLOYMENT,
    DOMAINS,
    KIND,
    MANAGED_BY,
    MANAGER,
    RESTARTED_BY,
    SITE_ID,
    STABLE_GATE,
    VERSION,
)
from orchestrator.sites.admission import Admitted
from orchestrator.sites.databases import Grant
from orchestrator.sites.scripts import HEALTH_PROBE, NGINX_START, RUN_SCRIPT
from orchestrator.sites.service import HealthCheck, Mount, ServiceSpec, with_fingerprint
from orchestrator.slices import NANOSECONDS, SiteRuntime
from orchestrator.traefik import labels as traefik
from orchestrator_contract.env import SITE_MOUNT, site_env
from orchestrator_contract.sites import SiteKind, service_name

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


# Each task reads whether it is held back for the stability window from its service's label when
# the task is made (a Swarm template): the spec is the same whichever the rollout.
GATE_TEMPLATE = '{{index .Service.Labels "' + STABLE_GATE + '"}}'


def site_uid(site_id: int, uid_base: int) -> int:
    """The uid (and gid) a site's tasks run as and its directory belongs to."""
    return uid_base + site_id


def desired_service(admitted: Admitted, version: int, runtime: SiteRuntime, site_dir: PurePath) -> ServiceSpec:
    """The service that makes the swarm match the admitted site at `version`, its database (if
    it is admitted with one) handed to its tasks."""
    site = admitted.site
    env = site_env(
        site.id,
        runtime.port,
        drain_seconds=runtime.drain_seconds,
        stable_seconds=runtime.stable_seconds,
        health_idle_seconds=runtime.health_idle_seconds,
        health_timeout_seconds=runtime.health_timeout_seconds,
        health_young_seconds=runtime.health_young_seconds,
        stable_gate=GATE_TEMPLATE,
    ) | (admitted.database.env() if admitted.database is not None else {})
    tmpfs = (Mount(target="/tmp", type="tmpfs"), Mount(target="/run", type="tmpfs"))
    if site.kind is SiteKind.STATIC:
        spec = ServiceSpec(
            image=admitted.image,
            command=("/bin/sh", "-c", NGINX_START),
            env={"NGINX_CONF": NGINX_CONF.replace("PORT", str(runtime.port)), **env},
            mounts=(Mount(source=str(site_dir), target=SITE_MOUNT, read_only=True), *tmpfs),
            **_common(admitted, version, runtime),
        )
    else:
        spec = ServiceSpec(
            image=admitted.image,
            command=("/bin/sh", "-c", RUN_SCRIPT),
            env={**site.env, **env},
            mounts=(Mount(source=str(site_dir), target=SITE_MOUNT), *tmpfs),
            **_common(admitted, version, runtime),
        )
    return with_fingerprint(spec)


def labels(admitted: Admitted, version: int, runtime: SiteRuntime) -> dict[str, str]:
    """Traefik's router (a serving site only), the domain claims and our bookkeeping (see
    `orchestrator.labels`). A site that does not serve has no tasks to route to: without Traefik's
    labels its service is not Traefik's business at all (the docker proxy lists Traefik only the
    services labelled `traefik.enable`), which is most of a large fleet."""
    site, name = admitted.site, service_name(admitted.site.id)
    routed = (
        traefik.labels(
            router=name,
            hosts=admitted.hosts,
            network=runtime.network,
            port=runtime.port,
            entrypoint=runtime.entrypoint,
            priority=runtime.router_priority,
            tls_entrypoint=runtime.tls_entrypoint,
            hsts_seconds=runtime.hsts_seconds,
        )
        if site.serving
        else {}
    )
    return (
        routed
        | admitted.claims.labels
        | {
            MANAGED_BY: MANAGER,
            DEPLOYMENT: runtime.deployment,
            SITE_ID: str(site.id),
            VERSION: str(version),
            STABLE_GATE: "1",
            DOMAINS: ",".join(admitted.hosts),
            KIND: site.kind.value,
        }
        | ({DATABASE: admitted.database.label} if admitted.database is not None else {})
    )


def _common(admitted: Admitted, version: int, runtime: SiteRuntime) -> dict[str, Any]:
    """The fields of every site's spec, static or dynamic."""
    uid = site_uid(admitted.site.id, runtime.uid_base)
    return dict(
        name=service_name(admitted.site.id),
        labels=labels(admitted, version, runtime),
        network=runtime.network,
        replicas=1 if admitted.site.serving else 0,
        nano_cpus=admitted.limits.nano_cpus,
        memory_bytes=admitted.limits.memory_bytes,
        user=f"{uid}:{uid}",
        cap_add=runtime.cap_add,
        pids_limit=runtime.pids_limit,
        healthcheck=HealthCheck(
            command=HEALTH_PROBE,
            interval_ns=runtime.health_interval_ns,
            # A steady probe may ask, rest `health_idle_seconds`, and ask again (see `sites.scripts`).
            timeout_ns=round((runtime.health_idle_seconds + 2 * runtime.health_timeout_seconds + 1) * NANOSECONDS),
            start_period_ns=runtime.health_start_period_ns,
            retries=runtime.health_retries,
        ),
        constraints=runtime.constraints,
        log_options=dict(runtime.log_options),
        update_delay_ns=runtime.update_delay_ns,
        update_monitor_ns=runtime.update_monitor_ns,
        restart_delay_ns=runtime.restart_delay_ns,
        restart_max_attempts=runtime.restart_max_attempts,
        restart_window_ns=runtime.restart_window_ns,
        stop_grace_ns=runtime.stop_grace_ns,
    )


def without_gate(spec: ServiceSpec) -> ServiceSpec:
    """The spec for a rollout during which nothing older serves (a new site, or one back from no
    tasks): its tasks are healthy at their first answer, so Traefik finds them while their
    stability window runs (watched in the task, and by the rollout: `sites.rollout`)."""
    return replace(spec, labels=spec.labels | {STABLE_GATE: "0"})


def with_database(spec: ServiceSpec, grant: Grant) -> ServiceSpec:
    """A live spec handing its tasks `grant` instead (a password reset), fingerprinted as a
    deploy of it would be (a restart's marker, which fingerprints leave out, is kept)."""
    marker = spec.labels.get(RESTARTED_BY)
    labels = {k: v for k, v in spec.labels.items() if k != RESTARTED_BY} | {DATABASE: grant.label}
    changed = with_fingerprint(replace(spec, env=spec.env | grant.env(), labels=labels))
    return changed if marker is None else replace(changed, labels=changed.labels | {RESTARTED_BY: marker})
