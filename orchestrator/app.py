"""Wiring for `orchestrator run`: wait for Docker and the broker, consume until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from orchestrator import retry
from orchestrator.bus import Consumer
from orchestrator.config import Settings
from orchestrator.errors import DockerUnavailable
from orchestrator.handlers import Context
from orchestrator.sitedirs import SiteDirs
from orchestrator.swarm import Swarm

log = logging.getLogger("orchestrator")


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    swarm = Swarm(settings.docker_url, settings.docker_timeout_seconds)
    if not await _wait_for_docker(swarm, stop):
        return
    ctx = Context(settings=settings, swarm=swarm, sitedirs=SiteDirs(settings.sites_root, settings.trash_dir_name))
    await Consumer(settings, ctx).run(stop)
    log.info("stopped")


async def _wait_for_docker(swarm: Swarm, stop: asyncio.Event) -> bool:
    try:
        async for attempt in retry.until_ready("docker", (DockerUnavailable,), stop):
            with attempt:
                await swarm.ping()
    except DockerUnavailable:
        return False  # stopped while waiting
    return True
