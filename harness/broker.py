"""Connections to the test broker as the local stack's users, and the dead-letter queue as an
operator sees it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from harness.director import Director
from harness.rabbit import LOCAL_BROKER, Broker
from harness.stack import ALL_DEAD_LETTERS
from harness.waiting import eventually


@contextlib.asynccontextmanager
async def connected(user: str, vhost: str, broker: Broker = LOCAL_BROKER) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection as a local-stack broker user (their passwords are their names)."""
    connection = await aio_pika.connect_robust(broker.url(user, vhost))
    try:
        yield connection
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def publishing_as_director(vhost: str, broker: Broker = LOCAL_BROKER) -> AsyncIterator[Director]:
    async with connected("director", vhost, broker) as connection:
        publisher = Director(connection)
        await publisher.start()
        yield publisher


def reason(message: AbstractIncomingMessage) -> str:
    """Why a message was dead-lettered: our header, or the broker's own `x-death` reason."""
    headers = message.headers or {}
    code = headers.get("x-orchestrator-error-code")
    if code is None:
        deaths = headers.get("x-death") or [{}]
        code = deaths[0].get("reason") if isinstance(deaths, list) and isinstance(deaths[0], dict) else None
    return code.decode() if isinstance(code, bytes) else str(code)


class DeadLetters:
    """Takes (and acks) what reaches the dead-letter queues (one per kind), remembering every
    message by id."""

    def __init__(self, admin: AbstractRobustConnection) -> None:
        self.admin = admin
        self.seen: dict[str, AbstractIncomingMessage] = {}

    async def take(self) -> list[AbstractIncomingMessage]:
        """Everything in the queue now; nothing (not an error) while the broker restarts."""
        taken: list[AbstractIncomingMessage] = []
        try:
            channel = await self.admin.channel()
            for name in ALL_DEAD_LETTERS:
                queue = await channel.declare_queue(name, passive=True)
                while (message := await queue.get(no_ack=True, fail=False)) is not None:
                    taken.append(message)
                    self.seen[message.message_id or ""] = message
            await channel.close()
        except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
            pass
        return taken

    async def collect(self, ids: set[str], timeout: float = 30) -> dict[str, AbstractIncomingMessage]:
        """Take until every message id in `ids` was seen; those messages."""

        async def all_seen() -> bool:
            await self.take()
            return ids <= self.seen.keys()

        try:
            await eventually(all_seen, timeout)
        except AssertionError:
            raise AssertionError(f"not dead-lettered: {sorted(ids - self.seen.keys())}") from None
        return {i: self.seen[i] for i in ids}

    def reasons(self) -> dict[str, str]:
        return {message_id: reason(message) for message_id, message in self.seen.items()}
