"""`orchestrator collect`: this node's site tasks every period, sent to the orchestrator (the
collector alone, on a node that runs sites: compose.yaml's global `collector`, docs/metrics.md).
Healthy while it hears Docker's event stream and its passes keep coming."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time

from orchestrator.app import stop_on_signals
from orchestrator.bus import broker
from orchestrator.commands.output import OK
from orchestrator.config import Settings
from orchestrator.logging_setup import fields
from orchestrator.metrics.collector import Collector
from orchestrator.metrics.samples import NodeSample
from orchestrator.monitor import heartbeat
from orchestrator.monitor.metering import SAMPLE_KEY, collector_of, collector_problems
from orchestrator.swarm.changes import DockerChanges
from orchestrator.swarm.client import DockerClient

log = logging.getLogger("orchestrator.metrics")


def main(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(collect(settings))
    return OK


async def collect(settings: Settings) -> None:
    stop = stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(settings.heartbeat_file.unlink, missing_ok=True)
        docker = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency=1)
        stack.callback(docker.close)
        connection = await broker.connect(settings.broker_url(), settings, stop, name="orchestrator-collector")
        stack.push_async_callback(connection.close)
        send = broker.publisher(
            connection,
            settings.collector_exchange,
            user_id=broker.user_of(settings.amqp_url),
            expiration=settings.sample_lifetime_seconds,
        )

        async def send_sample(sample: NodeSample) -> bool:
            return await send(SAMPLE_KEY, sample.model_dump_json().encode(), None)

        changes = DockerChanges(settings.docker_url, settings.docker_timeout_seconds, survey_seconds=0)
        collector = collector_of(settings, docker, send_sample, None) if settings.metrics_seconds else None
        if collector is not None:
            changes.listen(collector.on_change)
            changes.start()
            stack.callback(changes.stop)
            task = asyncio.create_task(collector.run())
            stack.callback(task.cancel)
        else:
            log.info("METRICS_SECONDS is 0: nothing to collect")
        await _beat(settings, stop, connection.connected, changes, collector)


async def _beat(
    settings: Settings,
    stop: asyncio.Event,
    connected: asyncio.Event,
    changes: DockerChanges,
    collector: Collector | None,
) -> None:
    started = time.monotonic()
    while not stop.is_set():
        # A broker away is said, not failed (see `monitor.heartbeat`): the connection comes back
        # by itself, and samples are only missed meanwhile.
        degraded = [] if connected.is_set() else ["not connected to the broker (reconnecting)"]
        problems = []
        if collector is not None:
            running = time.monotonic() - started
            events = changes.connected.is_set()
            problems = collector_problems(events, collector.last_pass, running, settings.metrics_seconds)
        try:
            heartbeat.write(settings.heartbeat_file, heartbeat.Beat(time.time(), problems, degraded))
        except OSError as exc:
            log.warning("could not write the heartbeat", extra=fields(error=repr(exc)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.heartbeat_interval_seconds):
                await stop.wait()
