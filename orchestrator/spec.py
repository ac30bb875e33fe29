"""Pure: what an event means for the swarm. A site event becomes a `ServiceSpec`, no I/O here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import PurePath
from typing import Any, Literal

from orchestrator import traefik
from orchestrator.config import Settings
from orchestrator.events import Site, SiteKind
from orchestrator.policy import check_domains, clamp_resources, resolve_image
from orchestrator.siteenv import SITE_MOUNT, site_env

# Ownership labels: how the orchestrator recognises its services and what it applied.
MANAGED_BY = "com.director.managed-by"
MANAGER = "orchestrator"
SITE_ID = "com.director.site-id"
VERSION = "com.director.version"
DOMAINS = "com.director.domains"
FINGERPRINT = "com.director.spec"

NANOSECONDS = 1_000_000_000

# Static sites: nginx serves /site/public from the site directory mounted read-only at /site.
# Mounting `public/` itself would let Docker resolve a link the site planted there on the host
# (at every task start, long after our check); inside the container it resolves harmlessly.
# The configuration travels in the environment and is written to tmpfs at start, so any nginx
# image with a shell works (the official one and the local stack's).
NGINX_CONF = """\
user www-data;
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
NGINX_START = 'printf "%s" "$NGINX_CONF" > /tmp/nginx.conf && exec nginx -c /tmp/nginx.conf -g "daemon off;"'

# Finds and runs the site's run.sh the way Director 4 did; without one it says so and idles,
# so a new, empty site deploys and starts serving as soon as its owner adds run.sh.
RUN_SCRIPT = """\
for f in /site/run.sh /site/private/run.sh /site/public/run.sh; do
  if [ -f "$f" ]; then
    echo "orchestrator: starting $f"
    cd /site/public
    if [ -x "$f" ]; then exec "$f"; else exec /bin/sh "$f"; fi
  fi
done
echo "orchestrator: no run.sh in /site, /site/private or /site/public: nothing to start" >&2
exec sleep 2147483647
"""


def service_name(site_id: int) -> str:
    return f"site_{site_id:04d}"


@dataclass(frozen=True)
class Mount:
    target: str
    source: str = ""
    type: Literal["bind", "tmpfs"] = "bind"
    read_only: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the swarm adapter needs to create or update one site service."""

    name: str
    image: str
    labels: dict[str, str]
    network: str
    replicas: int
    nano_cpus: int
    memory_bytes: int
    command: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    mounts: tuple[Mount, ...] = ()
    read_only: bool = True
    init: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    log_options: dict[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    update_delay_ns: int = 0
    update_monitor_ns: int = 0
    restart_delay_ns: int = 0
    stop_grace_ns: int = 0

    def fingerprint(self) -> str:
        """A digest of the spec without our bookkeeping labels: equal fingerprints, nothing to change."""
        # Shallow and explicit: dataclasses.asdict deep-copies and cost two thirds of a spec's build.
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["mounts"] = [vars(m) for m in self.mounts]
        data["labels"] = {k: v for k, v in self.labels.items() if k not in (VERSION, FINGERPRINT)}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


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
    )
    labels |= {
        MANAGED_BY: MANAGER,
        SITE_ID: str(site.id),
        VERSION: str(version),
        DOMAINS: ",".join(hosts),
    }
    tmpfs = (Mount(target="/tmp", type="tmpfs"), Mount(target="/run", type="tmpfs"))
    common = dict(
        name=name,
        labels=labels,
        network=settings.network,
        replicas=1 if site.serving else 0,
        nano_cpus=limits.nano_cpus,
        memory_bytes=limits.memory_bytes,
        cap_add=tuple(settings.cap_add),
        constraints=tuple(settings.placement_constraints),
        log_options={"max-size": settings.log_max_size, "max-file": str(settings.log_max_files)},
        update_delay_ns=round(settings.update_delay_seconds * NANOSECONDS),
        update_monitor_ns=round(settings.update_monitor_seconds * NANOSECONDS),
        restart_delay_ns=round(settings.restart_delay_seconds * NANOSECONDS),
        stop_grace_ns=round(settings.stop_grace_seconds * NANOSECONDS),
    )
    if site.kind is SiteKind.STATIC:
        spec = ServiceSpec(
            image=settings.static_image,
            command=("/bin/sh", "-c", NGINX_START),
            env={"NGINX_CONF": NGINX_CONF.replace("PORT", str(settings.site_port))},
            mounts=(Mount(source=str(site_dir), target=SITE_MOUNT, read_only=True), *tmpfs),
            **common,  # type: ignore[arg-type]
        )
    else:
        spec = ServiceSpec(
            image=resolve_image(site.image, settings),
            command=("/bin/sh", "-c", RUN_SCRIPT),
            env={**site.env, **site_env(site.id, settings.site_port)},
            workdir=f"{SITE_MOUNT}/public",
            mounts=(Mount(source=str(site_dir), target=SITE_MOUNT), *tmpfs),
            **common,  # type: ignore[arg-type]
        )
    return with_fingerprint(spec)


def with_fingerprint(spec: ServiceSpec) -> ServiceSpec:
    return replace(spec, labels=spec.labels | {FINGERPRINT: spec.fingerprint()})
