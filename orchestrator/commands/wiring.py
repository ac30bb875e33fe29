"""What the one-shot commands share: the adapters they build for one run."""

from __future__ import annotations

from orchestrator.config import Settings
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.services import Swarm


def cli_swarm(settings: Settings) -> Swarm:
    """A swarm adapter for a one-shot command: no event stream, so nothing is remembered."""
    client = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency=4)
    return Swarm(client, network=settings.network, port=settings.site_port)
