"""Every label the orchestrator writes or reads, in one place: how it recognises its own services,
tombstones, terminal containers and images, what it applied, who claims which domain, which
containers may reach sites, and the labels Docker itself puts on tasks.

Traefik's own label set (routers, middlewares) is built in `traefik.labels`.
"""

from __future__ import annotations

# Ownership: every service, tombstone config and terminal container we create carries it.
MANAGED_BY = "com.director.managed-by"
MANAGER = "orchestrator"
SITE_ID = "com.director.site-id"
# What was applied: the site's version, its domains and kind, the spec's fingerprint.
VERSION = "com.director.version"
DOMAINS = "com.director.domains"
FINGERPRINT = "com.director.spec"
KIND = "com.director.kind"
# A site service with a database: `<kind>:<server>` (the rest is in its env: `sites.databases`).
DATABASE = "com.director.database"
# The restart request a service's current tasks answer (a redelivered request restarts nothing).
RESTARTED_BY = "com.director.restarted-by"
# "0" while nothing older serves during a rollout (a new site, or one back from no tasks): its
# tasks are healthy at their first answer and watch the stability window in the background; "1":
# they are held back for the window. Read by each task through its env (`sites.spec`).
STABLE_GATE = "com.director.stable-gate"
# A swarm config recording a site's delete (see `swarm.tombstones`), and when it may go.
TOMBSTONE = "com.director.tombstone"
EXPIRES = "com.director.expires"  # epoch seconds
# A terminal session's container: its session id, and the process holding its TTY.
SESSION = "com.director.terminal-session"
OWNER = "com.director.terminal-owner"
# Which deployment (`ORCHESTRATOR_DEPLOYMENT`) made a site service or a terminal container: two
# deployments on one swarm (or two test workers) leave each other's sessions alone, and a
# deployment's Traefik can route only its own sites (a swarm-provider constraint on this label).
DEPLOYMENT = "com.director.deployment"
# Domain claims (`sites.domains`): a prefix for each claimed name and for each zone above one.
HOST_CLAIM = "com.director.host."
ZONE_CLAIM = "com.director.zone."
# On a built site image: the recipe it was built from (a redelivery reuses the image), the site,
# and its version (every version is its own image: deleting an old version's manifest, which
# removes every tag on it, must never take a newer version with it).
IMAGE_RECIPE = "com.director.image.recipe"
IMAGE_SITE = "com.director.image.site"
IMAGE_VERSION = "com.director.image.version"
# "true" on the containers that may open connections to sites (Traefik): `netguard.rules`.
EDGE = "director.edge"
# Docker's own, on every task's container (and in its log lines' details).
SWARM_SERVICE_ID = "com.docker.swarm.service.id"
SWARM_SERVICE_NAME = "com.docker.swarm.service.name"
SWARM_TASK_ID = "com.docker.swarm.task.id"


def managed(*labels: str) -> dict[str, list[str]]:
    """Docker's list filter for what we manage, narrowed by `labels` ("key" or "key=value")."""
    return {"label": [f"{MANAGED_BY}={MANAGER}", *labels]}


def version_of(labels: dict[str, str] | None) -> int:
    """The site version a service or tombstone records (0: none)."""
    return int((labels or {}).get(VERSION, "0"))
