"""The composition root of `orchestrator run`: build the adapters, wire each queue of the binding
table to its processor, consume until SIGTERM/SIGINT, and take it all down again in the reverse
order (one exit stack: whatever starts registers its stop at once, so setup and teardown cannot
drift apart)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from orchestrator import retry
from orchestrator.background import background
from orchestrator.bus import broker, decoding, topology
from orchestrator.bus.consumer import QueueConsumer
from orchestrator.bus.receiver import Processor, Receiver, Trust
from orchestrator.bus.replies import ReplyPublisher
from orchestrator.bus.settlement import Observer, QueuePolicy, Settler
from orchestrator.certificates.assembly import issuer_of
from orchestrator.config import Settings
from orchestrator.databases.dumps import Dumps
from orchestrator.databases.processor import DatabaseRequests
from orchestrator.databases.requests import SiteDatabases
from orchestrator.databases.servers import Databases
from orchestrator.errors import DockerUnavailable, PromiseNotKept
from orchestrator.files.processor import FileRequests
from orchestrator.files.service import SiteFiles
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.files.worker import Worker
from orchestrator.logging_setup import fields
from orchestrator.metrics.processor import MAX_REQUEST_BODY
from orchestrator.metrics.samples import MAX_SAMPLE_BYTES
from orchestrator.monitor import beating, housekeeping, reports
from orchestrator.monitor.health import HealthMonitor
from orchestrator.monitor.metering import Metering
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
from orchestrator.terminals import cgroup
from orchestrator.terminals.host import TerminalHost
from orchestrator.terminals.processor import TerminalCommands
from orchestrator.terminals.sessions import TerminalSessions
from orchestrator.traefik.routes import TraefikRoutes
from orchestrator_contract.terminals import TerminalUpdate

log = logging.getLogger("orchestrator")
M = TypeVar("M")
M_MMAP_THRESHOLD = -3  # malloc.h
# Terminal commands are small and latency-bound: many in flight, on their own channel. Each held
# message may be as large as the broker admits (max_message_size), so this bounds memory too.
TERMINAL_PREFETCH = 64


@dataclass(frozen=True)
class Binding:
    """One queue `orchestrator run` consumes. Everything else about consuming it (a channel of its
    own with confirms, receive → authenticate → parse → process → settle) is the same for all."""

    declare: Callable[[AbstractChannel, Settings], Awaitable[topology.Declared]]
    exchange: str  # Director's exchange: what an allowed publisher sent there is taken
    prefetch: int
    attempts: int  # deliveries before a transient failure is dead-lettered (1: no delayed retry)
    max_body: int  # the largest body the queue's contract admits
    requeue_exchange: str | None = None  # our own way back for delayed retries
    quick_replies: bool = False  # one-shot replies on a channel without confirms
    publishers: Sequence[str] | None = None  # whose messages are taken; None: ALLOWED_PUBLISHERS


def bindings(settings: Settings, replica: str) -> dict[str, Binding]:
    """The queues of `orchestrator run`, by the processor each feeds."""
    # Director's metrics requests (answered like file requests); the samples (a queue per replica).
    requests = Binding(topology.declare_metrics, settings.files_exchange, 16, 1, MAX_REQUEST_BODY, quick_replies=True)
    samples = functools.partial(topology.declare_samples, replica=replica)
    sampled = Binding(
        samples, settings.collector_exchange, 16, 1, MAX_SAMPLE_BYTES, publishers=settings.collector_publishers
    )
    return {
        "sites": Binding(
            topology.declare,
            settings.inbound_exchange,
            max(settings.prefetch, settings.concurrency),
            settings.max_attempts,
            decoding.MAX_BODY,
            requeue_exchange=settings.requeue_exchange,
        ),
        "terminals": Binding(
            topology.declare_terminals, settings.terminal_exchange, TERMINAL_PREFETCH, 1, decoding.MAX_COMMAND_BODY
        ),
        "files": Binding(
            topology.declare_files,
            settings.files_exchange,
            settings.files_prefetch,
            1,
            decoding.MAX_FILE_REQUEST_BODY,
            quick_replies=True,
        ),
        # A console query never waits behind a deploy or a file request.
        "databases": Binding(
            topology.declare_databases,
            settings.databases_exchange,
            settings.files_prefetch,
            1,
            decoding.MAX_DATABASE_REQUEST_BODY,
            quick_replies=True,
        ),
        **({"metrics": requests, "samples": sampled} if settings.metrics_seconds else {}),
    }


async def consume(
    connection: AbstractRobustConnection,
    binding: Binding,
    processor: Processor[M],
    settings: Settings,
    observe: Observer | None = None,
) -> QueueConsumer:
    """Declare a binding's queue on a channel of its own and put its processor behind it (not yet
    consuming: `QueueConsumer.start`)."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.set_qos(prefetch_count=binding.prefetch)
    declared = await binding.declare(channel, settings)
    quick = await connection.channel(publisher_confirms=False) if binding.quick_replies else None
    policy = QueuePolicy(binding.exchange, binding.attempts, declared.retry, declared.dead_letters, binding.max_body)
    receiver = Receiver(
        processor,
        Settler(channel, policy, settings.publish_timeout_seconds, unconfirmed=quick, observe=observe),
        Trust(binding.exchange, binding.publishers or settings.allowed_publishers, binding.requeue_exchange),
    )
    return QueueConsumer(declared.queue, receiver)


@dataclass(frozen=True)
class Adapters:
    """Docker, Traefik and the site builder, as `orchestrator run` uses them."""

    changes: DockerChanges
    docker: DockerClient
    swarm: Swarm
    terminal_docker: DockerClient  # a keystroke's resize never waits behind deploys
    logs_docker: DockerClient  # a log view never waits behind deploys either
    # The heartbeat's ping: asks whether Docker answers, never waits behind our own busy workers.
    ping_docker: DockerClient
    routes: TraefikRoutes
    builder: ImageBuilder  # Docker calls of its own: a build never holds a deploy's worker
    databases: Databases  # the site databases' servers


def _adapters(settings: Settings, stack: contextlib.AsyncExitStack) -> Adapters:
    def client(concurrency: int) -> DockerClient:
        made = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency)
        stack.callback(made.close)
        return made

    changes = DockerChanges(
        settings.docker_url, settings.docker_timeout_seconds, settings.task_survey_seconds, settings.deployment
    )
    stack.callback(changes.stop)
    docker = client(settings.concurrency)
    swarm = Swarm(docker, changes=changes, network=settings.network, port=settings.site_port)
    terminal_docker, logs_docker, ping_docker = client(4), client(2), client(1)
    routes = TraefikRoutes(settings.traefik_url, settings.traefik_api_url, https_address=settings.tls_probe_address)
    stack.push_async_callback(routes.close)
    builder = ImageBuilder(settings)
    stack.callback(builder.close)
    databases = Databases.of(settings)
    stack.push_async_callback(databases.close)
    return Adapters(changes, docker, swarm, terminal_docker, logs_docker, ping_docker, routes, builder, databases)


async def serve(settings: Settings) -> None:
    _return_large_buffers_to_the_system()
    stop = stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        swarm = (adapters := _adapters(settings, stack)).swarm
        if not await _wait_for_docker(swarm, stop):
            return
        adapters.changes.start()
        sitedirs = SiteDirs.of(settings)
        await _refuse_a_node_that_breaks_a_promise(sitedirs, settings)
        ctx = Context(
            settings=settings,
            swarm=swarm,
            sitedirs=sitedirs,
            routes=adapters.routes,
            verified=VerifiedRoutes(swarm.cache, settings.reverify_seconds),
            images=adapters.builder,
            databases=adapters.databases,
        )
        connection = await broker.connect(settings.broker_url(), settings, stop)
        stack.push_async_callback(connection.close)
        # Terminal output on a connection of its own: a flood of it, throttled by the broker, never
        # slows the results and acknowledgements of site events (flow control is per connection).
        output = await broker.connect(settings.broker_url(), settings, stop, name="orchestrator-terminal-output")
        stack.push_async_callback(output.close)
        terminal_host = TerminalHost(adapters.terminal_docker, settings.terminal_network, settings.deployment)
        sessions = TerminalSessions(settings, terminal_host, sitedirs, await _terminal_output(output, settings))
        site_files = _site_files(connection, settings, swarm, sitedirs, adapters.logs_docker)
        ctx.sessions = (terminal_host, site_files)
        metering = _metering(connection, settings, swarm, site_files)
        stack.push_async_callback(metering.close)
        site_events = SiteEvents(ctx, settings.results_exchange, settings.retry_budget_seconds)
        processors: dict[str, Processor[Any]] = {
            "sites": site_events,
            "terminals": TerminalCommands(sessions, settings.terminal_events_exchange),
            "files": FileRequests(site_files, settings.files_reply_queue_prefix, settings.amqp_max_message_bytes),
            "databases": _database_requests(connection, settings, adapters, ctx, stack),
            **metering.processors(),
        }
        consumers = {
            name: await consume(connection, binding, processors[name], settings, metering.figures.observe)
            for name, binding in bindings(settings, metering.figures.replica).items()
        }
        active = consumers["sites"].active
        # Reports of our own (health, drift) on the site events' channel, as their results.
        results = await consumers["sites"].queue.channel.get_exchange(settings.results_exchange, ensure=False)
        report = functools.partial(broker.publish_report, results, settings.publish_timeout_seconds)
        site_events.health = await _health_monitor(swarm, adapters.changes, report, active, settings, stack)
        ctx.certificates = issuer = issuer_of(settings, swarm, report, active.is_set)
        await sessions.start(consumers["terminals"].active)
        stack.push_async_callback(sessions.stop)
        site_files.start()
        stack.push_async_callback(site_files.stop)

        running = tuple(consumers.values())
        for consumer in running:
            await consumer.start()
            connection.reconnect_callbacks.add(consumer.refresh_active)
        stack.push_async_callback(finish, running, settings.shutdown_grace_seconds)

        network_guard = _network_guard(settings, adapters.docker, stack)
        stack.callback(settings.heartbeat_file.unlink, missing_ok=True)
        beat = beating.keep_beating(settings, connection, running, adapters.ping_docker, network_guard)
        background(stack, stop, beat)
        background(stack, stop, housekeeping.keep_house(swarm.tombstones, settings, active))
        background(stack, stop, housekeeping.drop_retired(adapters.databases, sitedirs, settings, active))
        background(stack, stop, issuer.run())
        if settings.drift_report_seconds:
            # For operators' own queues: nothing of Director's is bound to it, so not mandatory.
            drift = reports.report_drift(
                swarm, sitedirs, adapters.databases, settings, functools.partial(report, False), active
            )
            background(stack, stop, drift)
        background(stack, stop, *metering.start(active, adapters.docker, adapters.changes))

        log.info("consuming", extra=fields(queue=settings.work_queue, concurrency=settings.concurrency))
        await stop.wait()
    log.info("stopped")


async def _health_monitor(
    swarm: Swarm,
    changes: DockerChanges,
    report: Callable[..., Awaitable[bool]],
    active: asyncio.Event,
    settings: Settings,
    stack: contextlib.AsyncExitStack,
) -> HealthMonitor:
    """`site.health` from Docker's events; a standby says nothing until it has taken over."""
    monitor = HealthMonitor(swarm, functools.partial(report, True), active=active, deployment=settings.deployment)
    changes.listen(monitor.on_change)
    await monitor.start(await swarm.managed())
    stack.callback(monitor.stop)
    return monitor


async def finish(consumers: tuple[QueueConsumer, ...], grace: float) -> None:
    """First thing on the way down: no consumer takes a new message, and every in-flight one
    finishes within the one grace period (what is left goes back to its queue on close)."""
    for consumer in consumers:
        consumer.stop_taking()
    inflight = sum(c.inflight for c in consumers)
    log.info("stopping: no new messages; finishing in-flight ones", extra=fields(inflight=inflight))
    drained = await asyncio.gather(*(consumer.drain(grace) for consumer in consumers))
    if not all(drained):
        left = sum(c.inflight for c in consumers)
        log.warning("grace period over; unfinished messages go back to the queue", extra=fields(inflight=left))


async def _terminal_output(
    output: AbstractRobustConnection, settings: Settings
) -> Callable[[TerminalUpdate], Awaitable[None]]:
    """Sessions' updates, without confirms (a flood of them waits for the broker, nothing more)."""
    channel = await output.channel(publisher_confirms=False)
    updates = await channel.get_exchange(settings.terminal_events_exchange, ensure=False)

    async def emit(update: TerminalUpdate) -> None:
        await broker.send(updates, update.routing_key, update.model_dump_json().encode())

    return emit


def _site_files(
    connection: AbstractRobustConnection, settings: Settings, swarm: Swarm, sitedirs: SiteDirs, docker: DockerClient
) -> SiteFiles:
    """Files and logs; each stream of replies (an archive, a log follow) on a channel of its own."""
    replies = ReplyPublisher.opener(connection, settings.publish_timeout_seconds, settings.amqp_max_message_bytes)
    worker = Worker(sitedirs.root, settings.files_workers, settings.files_site_threads)
    return SiteFiles(settings, worker, swarm, ServiceLogs(docker, settings.docker_url), replies)


def _network_guard(settings: Settings, docker: DockerClient, stack: contextlib.AsyncExitStack) -> NetworkGuard | None:
    """The network guard's failure makes this process unhealthy too: its sites are not closed in."""
    if not settings.network_guard:
        return None
    network_guard = NetworkGuard(settings, sites_network(settings, docker), lasts_with_process=True)
    network_guard.start()
    stack.push_async_callback(network_guard.close)
    return network_guard


def _database_requests(
    connection: AbstractRobustConnection,
    settings: Settings,
    adapters: Adapters,
    ctx: Context,
    stack: contextlib.AsyncExitStack,
) -> DatabaseRequests:
    """Database requests; each dump's stream of replies on a channel of its own, with confirms."""
    replies = ReplyPublisher.opener(connection, settings.publish_timeout_seconds, settings.amqp_max_message_bytes)
    dumps = Dumps.of(replies, settings)
    stack.push_async_callback(dumps.stop)
    sites = SiteDatabases(
        settings, adapters.databases, adapters.swarm, dumps, ctx.site_locks, ctx.sitedirs.has_run_script
    )
    return DatabaseRequests(sites, settings.files_reply_queue_prefix, settings.amqp_max_message_bytes)


async def _refuse_a_node_that_breaks_a_promise(sitedirs: SiteDirs, settings: Settings) -> None:
    """A promise docs/security.md makes that this node cannot keep: no start, saying which."""
    if missing := sitedirs.missing_mount_options():
        raise PromiseNotKept(
            f"the sites root {settings.sites_root} is not mounted {','.join(missing)}: a setuid file or device "
            "node a site leaves would mean something on the host (mount it nosuid,nodev; see docs/security.md)"
        )
    if why := await asyncio.to_thread(sitedirs.quota_problem):
        raise PromiseNotKept(f"SITE_DISK_LIMIT is set but the sites root cannot enforce it: {why}")
    if cap := cgroup.TerminalsCap.of(settings):
        await asyncio.to_thread(cgroup.enforce, cap, settings.cgroup_root)


def _return_large_buffers_to_the_system() -> None:
    """File chunks make buffers of a MiB or more (a body, its base64, its bytes). glibc's dynamic
    threshold would move such buffers from mmap onto the heap after the first is freed, where
    fragmentation keeps the peak resident; a fixed threshold maps them and gives them back."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, 1024 * 1024)


def sites_network(settings: Settings, docker_client: DockerClient) -> SitesNetwork:
    return SitesNetwork(docker_client, settings.network, settings.netns_dir, settings.docker_url)


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _wait_for_docker(swarm: Swarm, stop: asyncio.Event) -> bool:
    try:
        async for attempt in retry.until_ready("docker", (DockerUnavailable,), stop):
            with attempt:
                await swarm.ping()
    except DockerUnavailable:
        return False  # stopped while waiting
    return True


def _metering(connection: AbstractRobustConnection, settings: Settings, swarm: Swarm, files: SiteFiles) -> Metering:
    publisher, depths = functools.partial(broker.publisher, connection), functools.partial(topology.depths, connection)
    return Metering(settings, swarm, publisher, depths, files.moved)
