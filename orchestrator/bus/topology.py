"""The queue topology, in one place.

director.sites (topic) --site.*--> orchestrator.site-events (quorum, single active consumer)
    | rejected past the delivery limit (a message that keeps crashing us)
    v
orchestrator.dead-letters (topic) --site.*--> orchestrator.site-events.dead (quorum)
                                  --terminal.*--> orchestrator.terminal-commands.dead (classic)
                                  --files.*, logs.*--> orchestrator.file-requests.dead (classic)
                                  --database.*--> orchestrator.database-requests.dead (classic)
    (a dead-letter queue per kind, each bounded by its policy: a flood of bad file or terminal
    requests never pushes site events' letters out)
orchestrator.retry (topic) --#--> orchestrator.site-events.retry (quorum, TTL)
    | TTL expired: dead-lettered, routing key kept
    v
orchestrator.requeue (fanout) --> orchestrator.site-events
orchestrator.results (topic) --site.*--> orchestrator.site-results (quorum, for Director)

director.terminals (topic) --terminal.*--> orchestrator.terminal-commands (classic, single active
    consumer, TTL: a keystroke nobody read in a minute is stale and dropped, never kept)
orchestrator.terminals (topic): session events, routing key terminal.<session_id>; Director binds
    its own queue per session

director.files (topic) --files.* and logs.*--> orchestrator.file-requests (classic, single active
    consumer, bounded length, TTL: a request nobody took in a minute is dropped, never kept)
director.databases (topic) --database.*--> orchestrator.database-requests (as file requests)
replies: default exchange, routing key = the request's reply_to (amq.rabbitmq.reply-to.* or
    director.replies.*: see bus.replies)

director.files (topic) --metrics.*--> orchestrator.metrics-requests (as the file requests: classic,
    single active consumer, bounded length, TTL), answered like them
orchestrator.collector (topic) --sample--> orchestrator.collector.<replica> (one per replica,
    exclusive, bounded, TTL: every replica keeps the latest windows)
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, AbstractRobustConnection
from pamqp.common import FieldTable

from orchestrator.config import Settings
from orchestrator.errors import BrokerSetupError


@dataclass(frozen=True)
class Declared:
    """What a queue's consumer needs of its declared topology."""

    queue: AbstractQueue
    dead_letters: AbstractExchange
    retry: AbstractExchange | None = None  # delayed retries (site events only)


def work_queue_arguments(settings: Settings) -> FieldTable:
    return {
        "x-queue-type": "quorum",
        # One active consumer: with two replicas the standby takes over on failure, and no two
        # processes ever race on the same site (Docker's version index would catch it, but a
        # delete racing an update across processes could still reorder tombstone and create).
        "x-single-active-consumer": True,
        "x-delivery-limit": settings.delivery_limit,
        "x-dead-letter-exchange": settings.dead_letter_exchange,
        # At-least-once dead-lettering (RabbitMQ >= 3.10): the broker keeps a message until the
        # dead-letter queue has confirmed it.
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_queue_arguments(settings: Settings) -> FieldTable:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": int(settings.retry_delay_seconds * 1000),
        # Not the default exchange: writing there would let our user publish to any queue.
        "x-dead-letter-exchange": settings.requeue_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


# The operations' routing keys (`files.list`, ..., `logs.follow`): see orchestrator_contract.files.
FILE_BINDING_KEYS = ("files.*", "logs.*")
DATABASE_BINDING_KEYS = ("database.*",)


def file_queue_arguments(settings: Settings) -> FieldTable:
    return {
        # Classic: a file manager's click should not wait for a quorum write. Uploads and log
        # follows live in one process, so only one consumer (the active replica) takes requests.
        "x-queue-type": "classic",
        "x-single-active-consumer": True,
        # A requester gave up long before a minute: an expired request is dropped, not kept (no
        # dead-letter exchange), which also ends any redelivery loop of a request that crashed us.
        "x-message-ttl": int(settings.files_request_ttl_seconds * 1000),
        # Bounded: past it the broker refuses Director's publish (Director hears it at once).
        "x-max-length": settings.files_queue_max_length,
        "x-overflow": "reject-publish",
    }


def terminal_queue_arguments(settings: Settings) -> FieldTable:
    return {
        # Classic: a keystroke should not wait for a quorum write. Sessions live in one process,
        # so only one consumer (the active replica) takes commands.
        "x-queue-type": "classic",
        "x-single-active-consumer": True,
        # No dead-letter exchange: an expired keystroke (nobody consumed it for a minute) must not
        # be kept anywhere. Malformed commands get their dead-letter copy from the settler.
        "x-message-ttl": 60_000,
    }


async def directors(channel: AbstractChannel, name: str) -> AbstractExchange:
    """One of Director's exchanges. They belong to the broker's definitions
    (deploy/rabbitmq/definitions.json), not to us: looked up passively (no rights needed, nothing
    redeclared), and their absence is said plainly."""
    try:
        return await channel.declare_exchange(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise BrokerSetupError(
            f"the broker has no exchange {name!r}: load deploy/rabbitmq/definitions.json into it first"
        ) from exc


async def declare(channel: AbstractChannel, settings: Settings) -> Declared:
    topic = aio_pika.ExchangeType.TOPIC
    inbound = await directors(channel, settings.inbound_exchange)
    results = await channel.declare_exchange(settings.results_exchange, topic, durable=True)
    retry = await channel.declare_exchange(settings.retry_exchange, topic, durable=True)
    dead_letters = await channel.declare_exchange(settings.dead_letter_exchange, topic, durable=True)
    requeue = await channel.declare_exchange(settings.requeue_exchange, aio_pika.ExchangeType.FANOUT, durable=True)

    dead_letter_queue = await channel.declare_queue(
        settings.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_letter_queue.unbind(dead_letters, "#")  # every kind's letters, before each had its own
    await dead_letter_queue.bind(dead_letters, settings.binding_key)
    retry_queue = await channel.declare_queue(
        settings.retry_queue, durable=True, arguments=retry_queue_arguments(settings)
    )
    await retry_queue.bind(retry, "#")
    work_queue = await channel.declare_queue(
        settings.work_queue, durable=True, arguments=work_queue_arguments(settings)
    )
    await work_queue.bind(inbound, settings.binding_key)
    await work_queue.bind(requeue)
    if settings.results_queue:
        results_queue = await channel.declare_queue(
            settings.results_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await results_queue.bind(results, "site.*")
    return Declared(work_queue, dead_letters, retry=retry)


async def declare_terminals(channel: AbstractChannel, settings: Settings) -> Declared:
    """On its own channel, after `declare` (which creates the dead letters)."""
    topic = aio_pika.ExchangeType.TOPIC
    commands = await directors(channel, settings.terminal_exchange)
    await channel.declare_exchange(settings.terminal_events_exchange, topic, durable=True)
    dead_letters = await channel.declare_exchange(settings.dead_letter_exchange, topic, durable=True)
    queue = await channel.declare_queue(
        settings.terminal_queue, durable=True, arguments=terminal_queue_arguments(settings)
    )
    await queue.bind(commands, settings.terminal_binding_key)
    await _side_dead_letters(channel, dead_letters, settings.terminal_queue, (settings.terminal_binding_key,))
    return Declared(queue, dead_letters)


METRICS_BINDING_KEY = "metrics.*"
SAMPLE_KEY = "sample"


async def declare_metrics(channel: AbstractChannel, settings: Settings) -> Declared:
    """Director's requests for the current metrics: a queue like the file requests' (their
    arguments), on the same exchange. After `declare` (which creates the dead letters)."""
    requests = await directors(channel, settings.files_exchange)
    dead_letters = await channel.declare_exchange(
        settings.dead_letter_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(settings.metrics_queue, durable=True, arguments=file_queue_arguments(settings))
    await queue.bind(requests, METRICS_BINDING_KEY)
    return Declared(queue, dead_letters)


def sample_queue_arguments(settings: Settings) -> FieldTable:
    return {
        "x-queue-type": "classic",
        # A replica that stops taking them holds 1,000 at most (the oldest go first).
        "x-message-ttl": int(settings.sample_lifetime_seconds * 1000),
        "x-max-length": 1000,
        "x-overflow": "drop-head",
    }


async def declare_samples(channel: AbstractChannel, settings: Settings, replica: str) -> Declared:
    """The collectors' exchange, and this replica's own queue of their samples (gone with its
    connection)."""
    samples = await channel.declare_exchange(settings.collector_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    dead_letters = await channel.declare_exchange(
        settings.dead_letter_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(
        f"{settings.collector_exchange}.{replica}",
        exclusive=True,
        auto_delete=True,
        arguments=sample_queue_arguments(settings),
    )
    await queue.bind(samples, SAMPLE_KEY)
    return Declared(queue, dead_letters)


async def depths(connection: AbstractRobustConnection, names: list[str]) -> dict[str, int]:
    """Messages waiting in each of these queues now (passive declarations: nothing is created), on
    a channel of its own: a missing queue closes the channel it was asked on."""
    found = {}
    channel = await connection.channel(publisher_confirms=False)
    try:
        for name in names:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                break
            found[name] = queue.declaration_result.message_count or 0
    finally:
        if not channel.is_closed:
            await channel.close()
    return found


async def declare_files(channel: AbstractChannel, settings: Settings) -> Declared:
    """On its own channel, after `declare` (which creates the dead letters)."""
    return await _declare_requests(channel, settings, settings.files_exchange, settings.files_queue, FILE_BINDING_KEYS)


async def declare_databases(channel: AbstractChannel, settings: Settings) -> Declared:
    """Database requests: queued, bounded and dropped when stale as file requests are."""
    return await _declare_requests(
        channel, settings, settings.databases_exchange, settings.databases_queue, DATABASE_BINDING_KEYS
    )


async def _declare_requests(
    channel: AbstractChannel, settings: Settings, exchange: str, queue_name: str, keys: tuple[str, ...]
) -> Declared:
    requests = await directors(channel, exchange)
    dead_letters = await channel.declare_exchange(
        settings.dead_letter_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(queue_name, durable=True, arguments=file_queue_arguments(settings))
    for key in keys:
        await queue.bind(requests, key)
    await _side_dead_letters(channel, dead_letters, queue_name, keys)
    return Declared(queue, dead_letters)


async def _side_dead_letters(
    channel: AbstractChannel, dead_letters: AbstractExchange, queue: str, keys: tuple[str, ...]
) -> None:
    """`<queue>.dead`: the letters of one kind of request, kept apart from the site events' (its
    bounds are the broker's policy; nobody replays them: they are for an operator to read)."""
    dead = await channel.declare_queue(f"{queue}.dead", durable=True, arguments={"x-queue-type": "classic"})
    for key in keys:
        await dead.bind(dead_letters, key)
