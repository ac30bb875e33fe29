"""The registry's credential, kept where every Docker client keeps one: the orchestrator's Docker
client configuration (`DOCKER_CONFIG`, or `~/.docker/config.json` as `docker login` writes it).

docker-py sends it by itself with builds (a parent pulled from the registry) and with every
service create and update (the swarm hands it to whichever node pulls the image); pushes and the
registry's HTTP API (tags listed, manifests looked up and deleted) take it from here, read at each
call, so a rotated credential is used without a restart.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import docker.auth


def credential(registry: str) -> dict[str, str] | None:
    """`{"username", "password"}` for `registry` (a host[:port], an image repository or a URL), or
    None when the configuration holds none (the registry then answers 401)."""
    host = urlsplit(registry).netloc if "://" in registry else registry.split("/")[0]
    found = docker.auth.load_config().resolve_authconfig(host) or {}
    if not found.get("username"):
        return None
    return {"username": str(found["username"]), "password": str(found.get("password") or "")}


def basic_auth(registry: str) -> tuple[str, str] | None:
    """The same, as `requests` takes it."""
    found = credential(registry)
    return (found["username"], found["password"]) if found else None
