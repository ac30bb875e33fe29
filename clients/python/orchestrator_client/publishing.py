"""Publishing to the broker, the one way the client does it: JSON, the contract's version header,
`user_id` (RabbitMQ checks it is the connection's user; the orchestrator believes nothing else),
and the broker's answer turned into the client's errors."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import ChannelClosed, ChannelInvalidStateError, DeliveryError, PublishError

from orchestrator_client.errors import AccessRefused, BrokerUnavailable, PublishRefused

# What aio-pika raises when there is no channel to publish on (the connection is away).
UNAVAILABLE = (ConnectionError, ChannelInvalidStateError, RuntimeError)
ACCESS_REFUSED = 403  # the AMQP reply code of a refused right
ACCESS_REFUSED_TEXT = "ACCESS_REFUSED"  # how RabbitMQ's reply text for it begins


def message(
    body: bytes,
    *,
    user_id: str,
    message_id: str | None = None,
    persistent: bool = True,
    headers: dict[str, Any] | None = None,
    **properties: Any,
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT,
        message_id=message_id or str(uuid.uuid4()),
        user_id=user_id,
        headers=headers,
        **properties,
    )


async def publish(
    exchange: AbstractExchange, routing_key: str, msg: aio_pika.Message, *, mandatory: bool, timeout: float
) -> None:
    """Publish; on a channel with confirms, return once the broker has taken it.

    PublishRefused: returned (`mandatory` and no queue bound) or refused (a full bounded queue, a
    missing right); BrokerUnavailable: no connection; TimeoutError: no confirm in time.
    """
    try:
        await exchange.publish(msg, routing_key, mandatory=mandatory, timeout=timeout)
    except PublishError as exc:  # returned: no queue takes it
        raise PublishRefused(f"{exchange.name!r} routed {routing_key!r} to no queue: {exc}") from None
    except DeliveryError as exc:  # nacked: e.g. a bounded queue is full
        raise PublishRefused(f"the broker refused {routing_key!r} on {exchange.name!r} (nack)") from exc
    except ChannelClosed as exc:  # e.g. ACCESS_REFUSED, PRECONDITION_FAILED (user_id)
        raise PublishRefused(f"the broker closed the channel: {exc}") from exc
    except UNAVAILABLE as exc:
        raise BrokerUnavailable(f"cannot publish {routing_key!r} now: {exc!r}") from exc


@contextlib.asynccontextmanager
async def refusals(what: str) -> AsyncIterator[None]:
    """The broker's refusal of a declare, bind or consume as `AccessRefused` (or another closed
    channel as `BrokerUnavailable`)."""
    try:
        yield
    except ChannelClosed as exc:
        if not refused(exc):
            raise BrokerUnavailable(f"{what}: {exc}") from exc
        raise AccessRefused(f"{what}: {exc}") from None
    except UNAVAILABLE as exc:
        raise BrokerUnavailable(f"{what}: {exc!r}") from exc


def refused(exc: BaseException | None) -> bool:
    """Whether the broker closed a channel because a right was missing: aiormq raises its
    `ChannelAccessRefused(reply_text)` for code 403, a plain `ChannelClosed(code, text)` otherwise."""
    if not isinstance(exc, ChannelClosed) or not exc.args:
        return False
    first = exc.args[0]
    return first == ACCESS_REFUSED or (isinstance(first, str) and first.startswith(ACCESS_REFUSED_TEXT))
