"""The labels the orchestrator writes on what it creates in the swarm, in one place: how it
recognises its own services, tombstones and terminal containers, and what it applied.

Domain claim labels (`com.director.host.*`, `com.director.zone.*`) are `sites.domains`'s; Traefik's
labels are `traefik.labels`'s.
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
# The restart request a service's current tasks answer (a redelivered request restarts nothing).
RESTARTED_BY = "com.director.restarted-by"
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


def managed(*labels: str) -> dict[str, list[str]]:
    """Docker's list filter for what we manage, narrowed by `labels` ("key" or "key=value")."""
    return {"label": [f"{MANAGED_BY}={MANAGER}", *labels]}


def version_of(labels: dict[str, str] | None) -> int:
    """The site version a service or tombstone records (0: none)."""
    return int((labels or {}).get(VERSION, "0"))
