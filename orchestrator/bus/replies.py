"""Replies to requests (`director.files`): their bodies, where the orchestrator may answer, and a
publisher for streams of replies (archives, log follows) that says when the requester is gone.

Replies go to the default exchange with routing key = the request's `reply_to`. The broker lets
the orchestrator write there (it must, for replies), which would let it publish into any queue,
so `reply_queue_allowed` admits two kinds of names only: RabbitMQ's direct reply-to pseudo queue
(`amq.rabbitmq.reply-to.<key>`) and Director's named reply queues (`director.replies.<anything>`
by default). A request naming anything else gets no reply; it is dead-lettered.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection
from pydantic import BaseModel

from orchestrator.bus import broker
from orchestrator.logging_setup import fields
from orchestrator_contract import version as contract
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import ErrorReply, ReplyError

log = logging.getLogger("orchestrator.replies")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_DIRECT = re.compile(r"amq\.rabbitmq\.reply-to\.[A-Za-z0-9+/=._-]{1,230}", re.ASCII)
_NAMED = re.compile(r"[!-~]{1,200}", re.ASCII)  # printable ASCII, no spaces
MAX_QUEUE_NAME = 255


def reply_queue_allowed(name: str | None, named_prefix: str) -> bool:
    """Whether `name` is a reply queue the orchestrator may publish into."""
    if not name or len(name.encode()) > MAX_QUEUE_NAME:
        return False
    if _DIRECT.fullmatch(name):
        return True
    return name.startswith(named_prefix) and _NAMED.fullmatch(name[len(named_prefix) :]) is not None


def is_direct(name: str) -> bool:
    return name.startswith(DIRECT_REPLY_TO + ".")


def within_limit(body: bytes, max_bytes: int) -> bytes:
    """`body`, or a `too_large` error in its place when the broker would refuse it (a message past
    its max_message_size closes the channel that carries it, and what else was in flight there).
    Every reply is bounded where it is made; this is the last line behind those bounds."""
    if len(body) <= max_bytes:
        return body
    log.error("a reply past the broker's message size limit was not sent", extra=fields(bytes=len(body)))
    return error_reply(ErrorCode.TOO_LARGE, f"the reply would be {len(body)} bytes, past the broker's {max_bytes}")


class ReplyPublisher:
    """Publishes a stream's replies one at a time, each confirmed by the broker.

    A reply to a named queue is `mandatory`: when the queue is gone the broker returns it, and
    `send` says False, so the stream ends. RabbitMQ 3.x returns every mandatory message to a
    direct reply-to address, live or not, so those go without `mandatory`; a stream into one
    ends at its own limit (or `logs.stop`) instead.
    """

    def __init__(self, channel: AbstractChannel, timeout: float, max_bytes: int) -> None:
        self._channel = channel
        self._timeout = timeout
        self._max_bytes = max_bytes

    @classmethod
    def opener(
        cls, connection: AbstractConnection, timeout: float, max_bytes: int
    ) -> Callable[[], contextlib.AbstractAsyncContextManager[Callable[[str, str, bytes], Awaitable[bool]]]]:
        """A channel of its own for each stream (opened when it starts, closed when it ends):
        whatever closes one stream's channel ends that stream, not the others'."""

        @contextlib.asynccontextmanager
        async def opened() -> AsyncIterator[Callable[[str, str, bytes], Awaitable[bool]]]:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            try:
                yield cls(channel, timeout, max_bytes).send
            finally:
                with contextlib.suppress(*broker.PUBLISH_ERRORS):
                    await channel.close()

        return opened

    async def send(self, reply_to: str, correlation_id: str, body: bytes) -> bool:
        message = aio_pika.Message(
            within_limit(body, self._max_bytes),
            content_type="application/json",
            correlation_id=correlation_id,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            app_id="orchestrator",
            headers={contract.HEADER: contract.VERSION},
        )
        try:
            await self._channel.default_exchange.publish(
                message, reply_to, mandatory=not is_direct(reply_to), timeout=self._timeout
            )
        except aiormq.exceptions.PublishError:
            return False  # returned: nobody consumes that queue any more
        except broker.PUBLISH_ERRORS as exc:
            log.warning("could not publish a reply; ending its stream", extra=fields(error=repr(exc)))
            return False
        return True


# --- bodies --------------------------------------------------------------------------------------


def ok_reply(result: BaseModel) -> bytes:
    """`{"ok": true, "result": ...}` without building a second model around a large result."""
    return b'{"ok":true,"result":' + result.model_dump_json().encode() + b"}"


def read_reply(chunk: _Chunk) -> bytes:
    """The reply of a `files.read` (a `ReadResult`), written directly: the data is the bulk of
    it, and is copied once into base64 instead of through a model."""
    head = b'{"ok":true,"result":{"data":"'
    tail = f'","offset":{chunk.offset},"size":{chunk.size},"eof":{"true" if chunk.eof else "false"},"etag":"'
    return head + base64.b64encode(chunk.data) + tail.encode() + chunk.etag.encode() + b'"}}'


class _Chunk(Protocol):
    @property
    def data(self) -> bytes: ...

    @property
    def offset(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def eof(self) -> bool: ...

    @property
    def etag(self) -> str: ...


def error_reply(code: ErrorCode, message: str) -> bytes:
    return ErrorReply(error=ReplyError(code=code, message=message)).model_dump_json().encode()
