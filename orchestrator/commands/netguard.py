"""`orchestrator netguard`: keep sites from opening connections on the sites network of this node,
until stopped (the guard alone, on a node that runs sites; `orchestrator run` holds one of its own)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time

from orchestrator.app import sites_network, stop_on_signals
from orchestrator.commands.output import OK
from orchestrator.config import Settings
from orchestrator.logging_setup import fields
from orchestrator.monitor import heartbeat
from orchestrator.netguard.guard import NetworkGuard
from orchestrator.swarm.client import DockerClient

log = logging.getLogger("orchestrator")


def main(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(guard(settings))
    return OK


async def guard(settings: Settings) -> None:
    """The network guard alone; healthy while its last pass wrote the filter (the heartbeat)."""
    stop = stop_on_signals()
    docker_client = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency=1)
    network_guard = NetworkGuard(settings, sites_network(settings, docker_client))
    network_guard.start()
    try:
        # Healthy while the last pass wrote the filter (or found nothing of the network here).
        while not stop.is_set() and network_guard.running:  # a loop that died beats no more
            beat = heartbeat.Beat(time.time(), [network_guard.problem] if network_guard.problem else [])
            try:
                heartbeat.write(settings.heartbeat_file, beat)
            except OSError as exc:
                log.warning("could not write the heartbeat", extra=fields(error=repr(exc)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.heartbeat_interval_seconds):
                    await stop.wait()
    finally:
        await network_guard.close()  # the filter stays: fail closed
        docker_client.close()
        settings.heartbeat_file.unlink(missing_ok=True)
