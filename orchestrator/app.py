"""The composition root of `orchestrator run`: build the adapters, wire each queue to its processor,
consume until SIGTERM/SIGINT, and take it all down again in the reverse order (one exit stack, so
setup and teardown cannot drift apart)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import signal
import time

from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from orchestrator import retry
from orchestrator.bus import broker, topology
from orchestrator.bus.consumer import QueueConsumer
from orchestrator.bus.decoding import MAX_BODY, MAX_COMMAND_BODY, MAX_FILE_REQUEST_BODY
from orchestrator.bus.receiver import Receiver, Trust
from orchestrator.bus.replies import ReplyPublisher
from orchestrator.bus.settlement import QueuePolicy, Settler
from orchestrator.config import Settings
from orchestrator.errors import DockerUnavailable, OrchestratorError
from orchestrator.files.processor import FileRequests
from orchestrator.files.service import SiteFiles
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.files.worker import Worker
from orchestrator.logging_setup import fields
from orchestrator.monitor import heartbeat, housekeeping, reports
from orchestrator.monitor.health import HealthMonitor
from orchestrator.netguard.guard import NetworkGuard
from orchestrator.netguard.network import SitesNetwork
from orchestrator.sites.handlers import Context
from orchestrator.sites.processor import SiteEvents
from orchestrator.swarm.builds import ImageBuilder
from orchestrator.swarm.cache import VerifiedRoutes
from orchestrator.swarm.changes import DockerChanges
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.logs import ServiceLogs
from orchestrator.swarm.services import Swarm
from orchestrator.terminals.host import TerminalHost
from orchestrator.terminals.processor import TerminalCommands
from orchestrator.terminals.sessions import TerminalSessions
from orchestrator.traefik.routes import TraefikRoutes
from orchestrator_contract.terminals import TerminalUpdate

log = logging.getLogger("orchestrator")
M_MMAP_THRESHOLD = -3  # malloc.h
# Terminal commands are small and latency-bound: many in flight, on their own channel. Each held
# message may be as large as the broker admits (max_message_size), so this bounds memory too.
TERMINAL_PREFETCH = 64


def _return_large_buffers_to_the_system() -> None:
    """File chunks make buffers of a MiB or more (a body, its base64, its bytes). glibc's dynamic
    threshold would move such buffers from mmap onto the heap after the first is freed, where
    fragmentation keeps the peak resident; a fixed threshold maps them and gives them back."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 1024 * 1024)


async def serve(settings: Settings) -> None:
    _return_large_buffers_to_the_system()
    stop = _stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        changes = DockerChanges(settings.docker_url, settings.docker_timeout_seconds, settings.task_survey_seconds)
        stack.callback(changes.stop)
        docker_client = DockerClient(settings.docker_url, settings.docker_timeout_seconds, settings.concurrency)
        stack.callback(docker_client.close)
        swarm = Swarm(docker_client, changes=changes, network=settings.network, port=settings.site_port)
        # Terminal sessions get their own Docker calls: a keystroke's resize never waits behind deploys.
        terminal_docker = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency=4)
        stack.callback(terminal_docker.close)
        # And site logs theirs: a log view never waits behind deploys either.
        logs_docker = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency=2)
        stack.callback(logs_docker.close)
        routes = TraefikRoutes(settings.traefik_url, settings.traefik_api_url)
        stack.push_async_callback(routes.close)
        if not await _wait_for_docker(swarm, stop):
            return
        changes.start()
        sitedirs = SiteDirs.of(settings)
        if missing := sitedirs.missing_mount_options():
            log.error(
                "the sites root is not mounted nosuid,nodev: mount it so (see docs/security.md)",
                extra=fields(sites_root=str(settings.sites_root), missing=",".join(missing)),
            )
        if why := await asyncio.to_thread(sitedirs.quota_problem):
            log.error(
                "SITE_DISK_LIMIT is set but the sites root cannot enforce it: sites run without a disk limit",
                extra=fields(sites_root=str(settings.sites_root), why=why),
            )
        terminal_host = TerminalHost(terminal_docker, settings.terminal_network, settings.deployment)
        # Image builds on Docker calls of their own: a build never holds a deploy's worker.
        builder = ImageBuilder(settings)
        stack.callback(builder.close)
        ctx = Context(
            settings=settings,
            swarm=swarm,
            sitedirs=sitedirs,
            routes=routes,
            verified=VerifiedRoutes(swarm.cache, settings.reverify_seconds),
            images=builder,
        )

        connection = await broker.connect(settings.broker_url(), settings, stop)
        stack.push_async_callback(connection.close)
        site_consumer, results = await _site_events(connection, settings, ctx)
        # A standby says nothing about health until it has taken over.
        report = functools.partial(broker.publish_report, results, settings.publish_timeout_seconds)
        monitor = HealthMonitor(swarm, functools.partial(report, True), active=site_consumer.active)
        changes.listen(monitor.on_change)
        await monitor.start(await swarm.managed())
        stack.callback(monitor.stop)
        # Terminal output on a connection of its own: a flood of it, throttled by the broker, never
        # slows the results and acknowledgements of site events (flow control is per connection).
        output = await broker.connect(settings.broker_url(), settings, stop, name="orchestrator-terminal-output")
        stack.push_async_callback(output.close)
        terminal_consumer, sessions = await _terminals(connection, output, settings, terminal_host, sitedirs)
        stack.push_async_callback(sessions.stop)
        files_consumer, site_files = await _files(connection, settings, swarm, sitedirs, logs_docker)
        stack.push_async_callback(site_files.stop)
        ctx.sessions = (terminal_host, site_files)

        consumers = (site_consumer, terminal_consumer, files_consumer)
        for consumer in consumers:
            await consumer.start()
            connection.reconnect_callbacks.add(consumer.refresh_active)
        stack.push_async_callback(_finish, consumers, settings.shutdown_grace_seconds)

        # The network guard's failure makes this process unhealthy too: its sites are not closed in.
        network_guard = (
            NetworkGuard(settings, _sites_network(settings, docker_client), lasts_with_process=True)
            if settings.network_guard
            else None
        )
        background = [
            asyncio.create_task(_beat(settings, connection, consumers, swarm, network_guard)),
            asyncio.create_task(housekeeping.keep_house(swarm.tombstones, settings, site_consumer.active)),
        ]
        if network_guard is not None:
            network_guard.start()
            stack.push_async_callback(network_guard.close)
        if settings.drift_report_seconds:
            # For operators' own queues: nothing of Director's is bound to it, so not mandatory.
            drift = reports.report_drift(
                swarm, sitedirs, settings, functools.partial(report, False), site_consumer.active
            )
            background.append(asyncio.create_task(drift))
        stack.callback(settings.heartbeat_file.unlink, missing_ok=True)
        for task in background:
            stack.callback(task.cancel)

        log.info("consuming", extra=fields(queue=settings.work_queue, concurrency=settings.concurrency))
        await stop.wait()
    log.info("stopped")


async def guard(settings: Settings) -> None:
    """`orchestrator netguard`: the network guard alone, on a node that runs sites."""
    stop = _stop_on_signals()
    docker_client = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency=1)
    network_guard = NetworkGuard(settings, _sites_network(settings, docker_client))
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
                await asyncio.wait_for(stop.wait(), settings.heartbeat_interval_seconds)
    finally:
        await network_guard.close()  # the filter stays: fail closed
        docker_client.close()
        settings.heartbeat_file.unlink(missing_ok=True)


def _sites_network(settings: Settings, docker_client: DockerClient) -> SitesNetwork:
    return SitesNetwork(docker_client, settings.network, settings.netns_dir, settings.docker_url)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _site_events(
    connection: AbstractRobustConnection, settings: Settings, ctx: Context
) -> tuple[QueueConsumer, AbstractExchange]:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.set_qos(prefetch_count=max(settings.prefetch, settings.concurrency))
    declared = await topology.declare(channel, settings)
    policy = QueuePolicy(
        settings.inbound_exchange, settings.max_attempts, declared.retry, declared.dead_letters, MAX_BODY
    )
    receiver = Receiver(
        SiteEvents(ctx, settings.results_exchange, settings.retry_budget_seconds),
        Settler(channel, policy, settings.publish_timeout_seconds),
        Trust(settings.inbound_exchange, settings.allowed_publishers, settings.requeue_exchange),
    )
    return QueueConsumer(declared.work_queue, receiver), declared.results


async def _terminals(
    connection: AbstractRobustConnection,
    output_connection: AbstractRobustConnection,
    settings: Settings,
    host: TerminalHost,
    sitedirs: SiteDirs,
) -> tuple[QueueConsumer, TerminalSessions]:
    """Terminal commands on their own channel; session output, without confirms, on its own connection."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.set_qos(prefetch_count=TERMINAL_PREFETCH)
    declared = await topology.declare_terminals(channel, settings)
    output = await output_connection.channel(publisher_confirms=False)
    updates = await output.get_exchange(settings.terminal_events_exchange, ensure=False)

    async def emit(update: TerminalUpdate) -> None:
        await broker.send(updates, update.routing_key, update.model_dump_json().encode())

    sessions = TerminalSessions(settings, host, sitedirs, emit)
    receiver = Receiver(
        TerminalCommands(sessions, settings.terminal_events_exchange),
        Settler(
            channel,
            QueuePolicy(settings.terminal_exchange, 1, None, declared.dead_letters, MAX_COMMAND_BODY),
            settings.publish_timeout_seconds,
        ),
        Trust(settings.terminal_exchange, settings.allowed_publishers),
    )
    consumer = QueueConsumer(declared.commands, receiver)
    await sessions.start(consumer.active)
    return consumer, sessions


async def _files(
    connection: AbstractRobustConnection, settings: Settings, swarm: Swarm, sitedirs: SiteDirs, docker: DockerClient
) -> tuple[QueueConsumer, SiteFiles]:
    """File and log requests on their own channel (a click in the file manager never waits behind
    a deploy); each stream of replies (an archive, a log follow) on a channel of its own."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.set_qos(prefetch_count=settings.files_prefetch)
    declared = await topology.declare_files(channel, settings)
    replies = ReplyPublisher.opener(connection, settings.publish_timeout_seconds, settings.amqp_max_message_bytes)
    quick = await connection.channel(publisher_confirms=False)  # one-shot replies
    site_files = SiteFiles(
        settings,
        Worker(sitedirs.root, settings.files_workers, settings.files_site_threads),
        swarm,
        ServiceLogs(docker, settings.docker_url),
        replies,
    )
    receiver = Receiver(
        FileRequests(site_files, settings.files_reply_queue_prefix, settings.amqp_max_message_bytes),
        Settler(
            channel,
            QueuePolicy(settings.files_exchange, 1, None, declared.dead_letters, MAX_FILE_REQUEST_BODY),
            settings.publish_timeout_seconds,
            unconfirmed=quick,
        ),
        Trust(settings.files_exchange, settings.allowed_publishers),
    )
    site_files.start()
    return QueueConsumer(declared.requests, receiver), site_files


async def _finish(consumers: tuple[QueueConsumer, ...], grace: float) -> None:
    """First thing on the way down: take no new message, let in-flight ones finish."""
    for consumer in consumers:
        consumer.stop_taking()
    inflight = sum(c.inflight for c in consumers)
    log.info("stopping: no new messages; finishing in-flight ones", extra=fields(inflight=inflight))
    if not await consumers[0].drain(grace):
        log.warning(
            "grace period over; unfinished messages go back to the queue", extra=fields(inflight=consumers[0].inflight)
        )


async def _beat(
    settings: Settings,
    connection: AbstractRobustConnection,
    consumers: tuple[QueueConsumer, ...],
    swarm: Swarm,
    network_guard: NetworkGuard | None,
) -> None:
    """The heartbeat `orchestrator healthcheck` reads (see `monitor.heartbeat`)."""
    interval = settings.heartbeat_interval_seconds
    lost_at: float | None = None  # when the broker connection went away
    # A reconnect restores the consumers a moment after the connection, and a broker going away
    # closes them a moment before it: not consuming is a problem only two beats in a row.
    idle_beats = 0
    while True:
        try:
            await asyncio.wait_for(swarm.ping(), interval)
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
        try:
            heartbeat.write(settings.heartbeat_file, beat)
        except OSError as exc:
            log.warning("could not write the heartbeat", extra=fields(error=repr(exc)))
        await asyncio.sleep(interval)


async def _wait_for_docker(swarm: Swarm, stop: asyncio.Event) -> bool:
    try:
        async for attempt in retry.until_ready("docker", (DockerUnavailable,), stop):
            with attempt:
                await swarm.ping()
    except DockerUnavailable:
        return False  # stopped while waiting
    return True
