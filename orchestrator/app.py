"""Wiring for `orchestrator run`: wait for Docker and the broker, consume until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import time

from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from orchestrator import retry
from orchestrator.bus import broker, topology
from orchestrator.bus.consumer import QueueConsumer
from orchestrator.bus.settlement import QueuePolicy, Settler
from orchestrator.config import Settings
from orchestrator.contract.sites import DriftReport, SiteHealth, TerminalEvent
from orchestrator.errors import DockerUnavailable, OrchestratorError, PublishFailed
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.logs import fields
from orchestrator.ops import heartbeat, status
from orchestrator.ops.health import HealthMonitor
from orchestrator.sites.handlers import Context
from orchestrator.sites.processor import SiteEvents
from orchestrator.sites.verified import Verified
from orchestrator.swarm.changes import DockerEvents
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.services import Swarm
from orchestrator.terminals.commands import TerminalCommands
from orchestrator.terminals.sessions import TerminalHost, TerminalSessions
from orchestrator.traefik.routes import TraefikRoutes

log = logging.getLogger("orchestrator")


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    events = DockerEvents(settings.docker_url, settings.docker_timeout_seconds)
    swarm = Swarm(
        settings.docker_url,
        settings.docker_timeout_seconds,
        concurrency=settings.concurrency,
        events=events,
        network=settings.network,
        port=settings.site_port,
    )
    # Terminal sessions get their own Docker calls: a keystroke's resize never waits behind deploys.
    terminal_docker = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency=4)
    terminal_host = TerminalHost(terminal_docker, settings.terminal_network)
    routes = TraefikRoutes(settings.traefik_url, settings.traefik_api_url)
    if not await _wait_for_docker(swarm, stop):
        return
    events.start()
    sitedirs = SiteDirs(settings.sites_root, settings.trash_dir_name)
    verified = Verified(settings.reverify_seconds, events.connected)
    events.listen(verified.on_event)
    ctx = Context(
        settings=settings, swarm=swarm, sitedirs=sitedirs, routes=routes, verified=verified, terminals=terminal_host
    )
    connection = await broker.connect(settings.broker_url(), settings, stop)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=max(settings.prefetch, settings.concurrency))
        declared = await topology.declare(channel, settings)
        policy = QueuePolicy(settings.inbound_exchange, settings.max_attempts, declared.retry, declared.dead_letters)
        settler = Settler(policy, settings.publish_timeout_seconds)
        consumer = QueueConsumer(declared.work_queue, SiteEvents(settings, ctx, settler, declared.results))
        # A standby says nothing about health until it has taken over.
        monitor = HealthMonitor(
            swarm, functools.partial(_publish_report, declared.results, settings, True), active=consumer.active
        )
        events.listen(monitor.on_event)
        await monitor.start(await swarm.managed())
        sessions, terminal_consumer = await _terminals(connection, settings, terminal_host, sitedirs)
        await consumer.start()
        await terminal_consumer.start()
        for queue_consumer in (consumer, terminal_consumer):
            connection.reconnect_callbacks.add(queue_consumer.refresh_active)
        log.info("consuming", extra=fields(queue=settings.work_queue, concurrency=settings.concurrency))
        background = [asyncio.create_task(_beat(settings, connection, (consumer, terminal_consumer), swarm))]
        if settings.drift_report_seconds:
            # For operators' own queues: nothing of Director's is bound to it, so not mandatory.
            publish = functools.partial(_publish_report, declared.results, settings, False)
            background.append(
                asyncio.create_task(status.report_drift(swarm, sitedirs, settings, publish, consumer.active))
            )
        await stop.wait()
        for task in background:
            task.cancel()
        settings.heartbeat_file.unlink(missing_ok=True)
        consumer.stop_taking()
        terminal_consumer.stop_taking()
        log.info("stopping: no new messages; finishing in-flight ones", extra=fields(inflight=consumer.inflight))
        if not await consumer.drain(settings.shutdown_grace_seconds):
            log.warning(
                "grace period over; unfinished messages go back to the queue", extra=fields(inflight=consumer.inflight)
            )
        await sessions.stop()
        monitor.stop()
    finally:
        await connection.close()
        events.stop()
        await routes.close()
        swarm.close()
        terminal_docker.close()
    log.info("stopped")


async def _beat(
    settings: Settings, connection: AbstractRobustConnection, consumers: tuple[QueueConsumer, ...], swarm: Swarm
) -> None:
    """The heartbeat `orchestrator healthcheck` reads (see `heartbeat`)."""
    interval = settings.heartbeat_interval_seconds
    while True:
        try:
            await asyncio.wait_for(swarm.ping(), interval)
            docker_ok = True
        except (OrchestratorError, TimeoutError):
            docker_ok = False
        broker_ok = connection.connected.is_set() and not connection.is_closed
        consuming = broker_ok and all(c.consuming for c in consumers)
        try:
            heartbeat.write(settings.heartbeat_file, heartbeat.Beat(time.time(), broker_ok, consuming, docker_ok))
        except OSError as exc:
            log.warning("could not write the heartbeat", extra=fields(error=repr(exc)))
        await asyncio.sleep(interval)


async def _publish_report(
    results: AbstractExchange, settings: Settings, mandatory: bool, report: SiteHealth | DriftReport
) -> bool:
    """A report of our own (not the answer to a delivery) on the results exchange, routing key =
    its type; False when the broker did not take it (the caller says it again later)."""
    try:
        await broker.publish(
            results,
            report.type,
            report.model_dump_json().encode(),
            timeout=settings.publish_timeout_seconds,
            message_id=str(report.event_id),
            mandatory=mandatory,
        )
    except PublishFailed:
        return False
    return True


async def _terminals(
    connection: AbstractRobustConnection, settings: Settings, host: TerminalHost, sitedirs: SiteDirs
) -> tuple[TerminalSessions, QueueConsumer]:
    """Terminal commands on their own channel; session output on one without confirms."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.set_qos(prefetch_count=256)
    declared = await topology.declare_terminals(channel, settings)
    output = await connection.channel(publisher_confirms=False)
    events = await output.get_exchange(settings.terminal_events_exchange, ensure=False)

    async def emit(event: TerminalEvent) -> None:
        await broker.send(events, event.routing_key, event.model_dump_json().encode())

    sessions = TerminalSessions(settings, host, sitedirs, emit)
    policy = QueuePolicy(settings.terminal_exchange, 1, None, declared.dead_letters)
    settler = Settler(policy, settings.publish_timeout_seconds)
    consumer = QueueConsumer(declared.commands, TerminalCommands(settings, sessions, settler, declared.events))
    await sessions.start(consumer.active)
    return sessions, consumer


async def _wait_for_docker(swarm: Swarm, stop: asyncio.Event) -> bool:
    try:
        async for attempt in retry.until_ready("docker", (DockerUnavailable,), stop):
            with attempt:
                await swarm.ping()
    except DockerUnavailable:
        return False  # stopped while waiting
    return True
