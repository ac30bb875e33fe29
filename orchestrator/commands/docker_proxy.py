"""`orchestrator docker-proxy`: a read-only window on the Docker API for Traefik
(`traefik.docker_proxy`), on a network only Traefik shares."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.commands.output import OK, REFUSED, say
from orchestrator.config import Settings
from orchestrator.traefik.docker_proxy import DockerProxy


def main(args: argparse.Namespace, settings: Settings) -> int:
    host, _, port = args.listen.rpartition(":")
    if not settings.docker_url.startswith("unix://"):
        say("docker-proxy forwards to a unix socket (ORCHESTRATOR_DOCKER_URL=unix://...)")
        return REFUSED
    if not host or not port.isdigit():
        say(f"--listen takes HOST:PORT, not {args.listen!r}")
        return REFUSED
    asyncio.run(DockerProxy(settings.docker_url.removeprefix("unix://")).serve(host, int(port)))
    return OK
