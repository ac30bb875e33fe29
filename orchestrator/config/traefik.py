"""Traefik: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pydantic import Field

from orchestrator.config.base import Group


class TraefikSettings(Group):
    # --- traefik --------------------------------------------------------------------------------
    # Where `site.deployed` is verified: a request with the site's Host header must be answered
    # by the site through this entrypoint.
    traefik_url: str = "http://127.0.0.1:8000"
    # Traefik's API (its `traefik` entrypoint, deploy/traefik/traefik.yml), to check that it routes
    # to exactly the current tasks; empty: not checked. The local stack publishes it on loopback.
    traefik_api_url: str = "http://127.0.0.1:8080"
    # How long Traefik may take to serve a healthy site before `not_routed`.
    route_timeout_seconds: float = Field(default=20.0, gt=0)
    # A redelivered event of a site verified this recently, with nothing happened to its tasks
    # since (Docker's events say), reuses that check instead of asking Traefik again.
    reverify_seconds: float = Field(default=30.0, ge=0)
    # Site routers get this fixed priority, so no site can outrank another router (the panel's)
    # by the length of its rule.
    router_priority: int = Field(default=1, ge=1)
