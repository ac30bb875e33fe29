"""The heartbeat's loop in `orchestrator run`: every interval, whether the broker is connected, the
consumers consume, Docker answers and the network guard holds, written where `orchestrator
healthcheck` reads it (`monitor.heartbeat`)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from orchestrator.bus.consumer import QueueConsumer
from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.monitor import heartbeat
from orchestrator.netguard.guard import NetworkGuard
from orchestrator.swarm.client import DockerClient

log = logging.getLogger("orchestrator")


class Connection(Protocol):
    """The broker connection, as the heartbeat looks at it (aio-pika's robust connection)."""

    @property
    def connected(self) -> asyncio.Event: ...

    @property
    def is_closed(self) -> bool: ...


async def keep_beating(
    settings: Settings,
    connection: Connection,
    consumers: tuple[QueueConsumer, ...],
    docker: DockerClient,
    network_guard: NetworkGuard | None,
) -> None:
    """The heartbeat `orchestrator healthcheck` reads (`monitor.heartbeat`). Docker is pinged
    on a client of its own: behind the deploys' workers, a busy replica (or one looking at a burst
    of events) would read as Docker not answering, and Swarm would replace it."""
    interval = settings.heartbeat_interval_seconds
    lost_at: float | None = None  # when the broker connection went away
    # A reconnect restores the consumers a moment after the connection, and a broker going away
    # closes them a moment before it: not consuming is a problem only two beats in a row.
    idle_beats = 0
    said: list[str] = []  # the problems last logged: a change is logged once, not every beat
    while True:
        try:
            async with asyncio.timeout(interval):
                await docker.run(lambda api: api.ping())
            docker_ok = True
        except (OrchestratorError, TimeoutError):
            docker_ok = False
        now = time.time()
        if connection.connected.is_set() and not connection.is_closed:
            lost_at = None
        elif lost_at is None:
            lost_at = now
        idle_beats = 0 if lost_at is not None or all(c.consuming for c in consumers) else idle_beats + 1
        away = None if lost_at is None else now - lost_at
        beat = heartbeat.orchestrator_beat(now, away, idle_beats < 2, docker_ok)
        if network_guard and network_guard.problem:
            beat.problems.append(network_guard.problem)
        if beat.problems != said:
            # What the health check will say, in the log too: after a replica was replaced, why.
            if beat.problems:
                log.warning("health check failing", extra=fields(problems="; ".join(beat.problems)))
            else:
                log.info("health check passing again")
            said = beat.problems
        try:
            heartbeat.write(settings.heartbeat_file, beat)
        except OSError as exc:
            log.warning("could not write the heartbeat", extra=fields(error=repr(exc)))
        await asyncio.sleep(interval)
