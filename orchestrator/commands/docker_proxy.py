"""`orchestrator docker-proxy`: a read-only window on the Docker API for Traefik
(`traefik.docker_proxy`), on a network only Traefik shares."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.commands.output import OK, REFUSED, say
from orchestrator.config import Settings
from orchestrator.traefik.docker_proxy import DockerProxy


def main(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.docker_url.startswith("unix://"):
        say("docker-proxy forwards to a unix socket (ORCHESTRATOR_DOCKER_URL=unix://...)")
        return REFUSED
    proxy = DockerProxy(settings.docker_url.removeprefix("unix://"))
    if args.listen.startswith("unix:"):
        asyncio.run(proxy.serve_unix(args.listen.removeprefix("unix:")))
        return OK
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        say(f"--listen takes HOST:PORT or unix:PATH, not {args.listen!r}")
        return REFUSED
    asyncio.run(proxy.serve(host, int(port)))
    return OK
