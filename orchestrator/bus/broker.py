"""The aio-pika edge: connect, publish with confirms, and read a delivery into an `Envelope`.

aio-pika is imported only in `orchestrator.bus` (an import-linter contract in `make lint` says so).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from yarl import URL

from orchestrator import retry
from orchestrator.bus.envelope import Envelope, believed_headers
from orchestrator.config import Settings
from orchestrator.errors import BrokerUnavailable, PublishFailed
from orchestrator.logging_setup import fields
from orchestrator_contract import version as contract

log = logging.getLogger("orchestrator.broker")
PERSISTENT, NOT_PERSISTENT = aio_pika.DeliveryMode.PERSISTENT.value, aio_pika.DeliveryMode.NOT_PERSISTENT.value

PUBLISH_ERRORS = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    asyncio.TimeoutError,
    ConnectionError,
    RuntimeError,  # aio-pika raises it for a channel that is closed mid-reconnect
)


async def connect(
    url: str, settings: Settings, stop: asyncio.Event | None = None, *, patient: bool = True, name: str = "orchestrator"
) -> AbstractRobustConnection:
    """A robust connection. `patient`: wait for the broker (until `stop`) instead of failing at once."""
    target = URL(url)
    if "heartbeat" not in target.query:
        target = target.update_query(heartbeat=settings.heartbeat_seconds)
    errors = (TimeoutError, ConnectionError, OSError, aiormq.exceptions.AMQPError)
    try:
        async for attempt in retry.until_ready("the broker", errors if patient else (), stop):
            with attempt:
                return await aio_pika.connect_robust(
                    target,
                    # Back within a second or two of a broker restart (aio-pika's default waits 5 s).
                    reconnect_interval=1,
                    ssl_context=_ssl_context(settings) if target.scheme == "amqps" else None,
                    client_properties={"connection_name": name},
                )
    except errors as exc:
        # Named by host and port only: the URL may carry a password.
        why = str(exc) or type(exc).__name__
        raise BrokerUnavailable(f"cannot connect to the broker at {target.host}:{target.port}: {why}") from exc
    raise AssertionError("unreachable: the retry loop returns or raises")


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.amqp_ca_file) if settings.amqp_ca_file else None)
    if settings.amqp_cert_file:
        context.load_cert_chain(
            str(settings.amqp_cert_file), str(settings.amqp_key_file) if settings.amqp_key_file else None
        )
    return context


async def publish(
    exchange: AbstractExchange,
    routing_key: str,
    body: bytes,
    *,
    timeout: float,
    headers: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    correlation_id: str | None = None,
    user_id: str | None = None,
    content_type: str | None = "application/json",
    persistent: bool = True,
    mandatory: bool = True,
) -> None:
    """Publish and wait for the broker's confirm (`mandatory`: a message no queue takes is an
    error, not dropped); PublishFailed if not."""
    properties = aiormq.spec.Basic.Properties(
        headers={contract.HEADER: contract.VERSION, **(headers or {})},
        content_type=content_type,
        delivery_mode=PERSISTENT if persistent else NOT_PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        user_id=user_id,
        timestamp=datetime.now(UTC),
        app_id="orchestrator",
    )
    try:
        await _basic_publish(exchange, routing_key, body, properties, mandatory=mandatory, timeout=timeout)
    except PUBLISH_ERRORS as exc:
        raise PublishFailed(f"publish to {exchange.name!r} with key {routing_key!r} failed: {exc!r}") from exc


async def send(
    exchange: AbstractExchange,
    routing_key: str,
    body: bytes,
    *,
    message_id: str | None = None,
    user_id: str | None = None,
    expiration: float | None = None,
) -> bool:
    """Publish at once, without waiting for a confirm, to whoever listens (terminal output: a
    keystroke's echo must not wait for a disk write, and a lost one is not worth a retry; metrics:
    the next period says it again). `expiration`: seconds a queue keeps it unread. False when the
    broker is unreachable."""
    properties = aiormq.spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=NOT_PERSISTENT,
        headers={contract.HEADER: contract.VERSION},
        message_id=message_id,
        user_id=user_id,
        expiration=None if expiration is None else str(int(expiration * 1000)),
        app_id="orchestrator",
    )
    try:
        await _basic_publish(exchange, routing_key, body, properties, mandatory=False)
    except PUBLISH_ERRORS as exc:
        log.warning("could not publish", extra=fields(exchange=exchange.name, error=repr(exc)))
        return False
    return True


async def _basic_publish(
    exchange: AbstractExchange,
    routing_key: str,
    body: bytes,
    properties: aiormq.spec.Basic.Properties,
    *,
    mandatory: bool,
    timeout: float | None = None,
) -> None:
    """What `Exchange.publish` does, from properties built directly: an `aio_pika.Message` is
    sixteen attribute writes and a copy into these same properties, on every result, reply and
    terminal output."""
    channel = cast(aio_pika.Exchange, exchange).channel
    if channel.is_closed:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
    underlay = await channel.get_underlay_channel()
    name = exchange.name
    await underlay.basic_publish(
        body, exchange=name, routing_key=routing_key, properties=properties, mandatory=mandatory, timeout=timeout
    )


# A publisher of our own messages: (routing key, body, message id) -> whether the broker took it.
Send = Callable[[str, bytes, str | None], Awaitable[bool]]


def publisher(
    connection: AbstractRobustConnection, exchange: str, *, user_id: str | None = None, expiration: float | None = None
) -> Send:
    """`send` to `exchange` without confirms (metrics: the next period says it again), on a channel
    of its own, opened again when the broker closed it (the exchange missing: no orchestrator had
    declared it yet). `user_id`: the connection's user, for a consumer that checks who sent it."""
    opened: list[tuple[AbstractChannel, AbstractExchange]] = []

    async def publish(routing_key: str, body: bytes, message_id: str | None) -> bool:
        try:
            if not opened or opened[0][0].is_closed:
                channel = await connection.channel(publisher_confirms=False)
                opened[:] = [(channel, await channel.get_exchange(exchange, ensure=False))]
        except PUBLISH_ERRORS as exc:
            log.warning("could not open a channel", extra=fields(exchange=exchange, error=repr(exc)))
            return False
        return await send(
            opened[0][1], routing_key, body, message_id=message_id, user_id=user_id, expiration=expiration
        )

    return publish


def user_of(url: str) -> str:
    """The user of an AMQP URL: what the broker checks a message's user_id against."""
    return unquote(urlsplit(url).username or "guest")


class Report(Protocol):
    """A message of our own accord (health, drift): routed by its type, identified by its id."""

    @property
    def type(self) -> str: ...

    @property
    def event_id(self) -> uuid.UUID: ...

    def model_dump_json(self) -> str: ...


async def publish_report(exchange: AbstractExchange, timeout: float, mandatory: bool, report: Report) -> bool:
    """Publish a report of our own (not the answer to a delivery) with its type as routing key;
    False when the broker did not take it (the caller says it again later)."""
    try:
        await publish(
            exchange,
            report.type,
            report.model_dump_json().encode(),
            timeout=timeout,
            message_id=str(report.event_id),
            mandatory=mandatory,
        )
    except PublishFailed:
        return False
    return True


def to_envelope(message: AbstractIncomingMessage, requeue_exchange: str | None) -> Envelope:
    exchange = message.exchange or ""
    return Envelope(
        body=message.body,
        exchange=exchange,
        routing_key=message.routing_key or "",
        user_id=message.user_id,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        headers=believed_headers(message.headers or {}, exchange, requeue_exchange),
    )


async def ack(message: AbstractIncomingMessage) -> None:
    try:
        await message.ack()
    except PUBLISH_ERRORS as exc:
        # The channel died after the confirm: the broker redelivers and the handler is idempotent.
        log.warning("ack failed; the message will be redelivered", extra=fields(error=repr(exc)))
