"""Request and reply: the transport of `Files`, `Logs`, `Metrics` (over `director.files`) and
`Databases` (over `director.databases`; `Names.exchange_of` says which operation goes where).

Two reply styles. RabbitMQ's direct reply-to (the default) needs no queue: requests and replies
share one channel, which cannot be in confirm mode, so a request the broker refuses is only noticed
as a timeout. A named reply queue `<prefix><name>` (exclusive, gone with the connection) costs a
queue but its requests are published with confirms: a full request queue is `PublishRefused` at
once.

Every request carries a fresh `correlation_id`; replies come back with it. A streaming operation
(`files.archive`, `logs.follow`) gets many replies to one request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, TypeVar

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import BaseModel, RootModel

from orchestrator_client import publishing
from orchestrator_client.errors import (
    AccessRefused,
    BrokerUnavailable,
    ContractMismatch,
    IoError,
    StreamOverflow,
    error_for,
)
from orchestrator_client.names import DIRECT_REPLY_TO, Names
from orchestrator_contract import version
from orchestrator_contract.databases import DumpChunk
from orchestrator_contract.files import ArchiveChunk

R = TypeVar("R", bound=BaseModel)
# A request waiting for its reply, or a stream for its replies.
Waiting = asyncio.Future[dict[str, Any]] | asyncio.Queue[dict[str, Any]]

# Replies (archive chunks of up to a MiB, log updates) that arrive for a stream before its reader
# takes them; past it the stream fails (`StreamOverflow`) rather than holding an archive in memory.
MAX_QUEUED_REPLIES = 64


class Request(Protocol):
    """A request of the contract (`FileRequest`, `MetricsRequest`, `DatabaseRequest`): its `type`
    is the operation, the routing key."""

    @property
    def type(self) -> str: ...

    def model_dump_json(self) -> str: ...


class Requests:
    def __init__(
        self,
        connection: AbstractRobustConnection,
        names: Names,
        user_id: str,
        *,
        reply_queue: str | None,
        timeout: float,
    ) -> None:
        """`names`: where each operation goes (`Names.exchange_of`); `reply_queue`: None for
        direct reply-to, else the name of a queue of the user's own to declare
        (`director.replies.<anything>` for Director). One reply consumer serves every exchange."""
        self.connection = connection
        self.names = names
        self.user_id = user_id
        self.reply_queue = reply_queue
        self.timeout = timeout
        self._pending: dict[str, Waiting] = {}
        self._started = asyncio.Lock()
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._reply_to = ""

    async def _start(self) -> AbstractChannel:
        async with self._started:
            channel = self._channel
            if channel is None:
                async with publishing.refusals("a queue for the replies"):
                    channel = self._channel = await self._open()
            return channel

    async def _exchange(self, operation: str) -> AbstractExchange:
        channel = await self._start()
        name = self.names.exchange_of(operation)
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = self._exchanges[name] = await channel.get_exchange(name, ensure=False)
        return exchange

    async def _open(self) -> AbstractChannel:
        consuming = await self.connection.channel(publisher_confirms=False)
        if self.reply_queue is None:
            # Direct reply-to: publish on the channel that consumes the replies, without confirms
            # (RabbitMQ 3.x delivers no direct reply to a channel in confirm mode).
            queue = await consuming.get_queue(DIRECT_REPLY_TO, ensure=False)
            self._reply_to, channel = DIRECT_REPLY_TO, consuming
        else:
            queue = await consuming.declare_queue(self.reply_queue, exclusive=True, auto_delete=True)
            self._reply_to = self.reply_queue
            channel = await self.connection.channel(publisher_confirms=True)
        await queue.consume(self._on_reply, no_ack=True)
        for watched in {consuming, channel}:
            watched.close_callbacks.add(self._on_channel_closed)
        return channel

    def _on_channel_closed(self, _channel: object, exc: BaseException | None = None) -> None:
        """The broker closed a channel (a refused publish, a lost connection; aio-pika reopens
        it): every request in flight fails now rather than at its timeout."""
        if exc is None:
            return  # closed by us
        if publishing.refused(exc):
            error = {"code": AccessRefused.code, "message": f"the broker refused: {exc}"}
        else:
            error = {"code": BrokerUnavailable.code, "message": f"the channel closed: {exc!r}"}
        for correlation_id, waiting in list(self._pending.items()):
            self._deliver(correlation_id, waiting, {"ok": False, "error": error})

    async def call(self, request: Request, result: type[R], timeout: float | None = None) -> R:
        """Send `request`; its reply's result as `result` (the operation's model in the contract's
        `RESULTS`); an error reply raises its error."""
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            await self._publish(request, correlation_id)
            async with asyncio.timeout(timeout or self.timeout):
                reply = await future
        finally:
            self._pending.pop(correlation_id, None)
        return result_of(reply, result)

    async def raw(self, operation: str, body: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send `body` as `operation` unchecked; the reply's `result` as it came (an error reply
        raises its error). For an operation this client has no method for yet, or a test's
        deliberately malformed request."""
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            await self._send(operation, json.dumps(body).encode(), correlation_id)
            async with asyncio.timeout(timeout or self.timeout):
                reply = await future
        finally:
            self._pending.pop(correlation_id, None)
        return result_of(reply, _Raw).root

    @property
    def reply_to(self) -> str:
        """Where replies come: the direct reply-to address or the named reply queue."""
        return self.reply_queue or DIRECT_REPLY_TO

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """Send `request`; its replies, raw, in the order they arrive, while the context lasts."""
        correlation_id = uuid.uuid4().hex
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_QUEUED_REPLIES)
        self._pending[correlation_id] = replies
        try:
            await self._publish(request, correlation_id)
            yield replies
        finally:
            self._pending.pop(correlation_id, None)

    async def chunks(self, request: Request, chunk: type[ArchiveChunk | DumpChunk], what: str) -> AsyncIterator[bytes]:
        """Send `request`; the bytes its replies carry (`files.archive`'s zip, `database.dump`'s
        dump), in order. Each chunk must follow the last, and the whole match the last one's
        `sha256` and `size`, or `IoError` (`what` names it)."""
        async with self.stream(request) as replies:
            digest, seq, size = hashlib.sha256(), 0, 0
            while True:
                async with asyncio.timeout(self.timeout):
                    piece = result_of(await replies.get(), chunk)
                if piece.seq != seq:
                    raise IoError(f"{what} chunk {piece.seq} arrived, {seq} expected")
                data = base64.b64decode(piece.data)
                digest.update(data)
                size += len(data)
                yield data
                if piece.last:
                    if piece.sha256 != digest.hexdigest():
                        raise IoError(f"the {what}'s sha256 does not match what arrived")
                    if piece.size is not None and piece.size != size:
                        raise IoError(f"the {what} is {piece.size} bytes, {size} arrived")
                    return
                seq += 1

    async def _publish(self, request: Request, correlation_id: str) -> None:
        await self._send(request.type, request.model_dump_json().encode(), correlation_id)

    async def _send(self, operation: str, body: bytes, correlation_id: str) -> None:
        exchange = await self._exchange(operation)
        msg = publishing.message(
            body,
            user_id=self.user_id,
            persistent=False,
            headers={version.HEADER: version.VERSION},
            correlation_id=correlation_id,
            reply_to=self._reply_to,
        )
        confirmed = self.reply_queue is not None
        await publishing.publish(exchange, operation, msg, mandatory=confirmed, timeout=self.timeout)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiting = self._pending.get(message.correlation_id or "")
        if waiting is None:
            return  # an answer nobody waits for any more
        if not version.compatible((message.headers or {}).get(version.HEADER)):
            reply: dict[str, Any] = {
                "ok": False,
                "error": {"code": ContractMismatch.code, "message": _mismatch(message)},
            }
        else:
            reply = json.loads(message.body)
        self._deliver(message.correlation_id or "", waiting, reply)

    def _deliver(self, correlation_id: str, waiting: Waiting, reply: dict[str, Any]) -> None:
        if isinstance(waiting, asyncio.Queue):
            if waiting.full():  # the reader fell behind: end its stream, say why
                self._pending.pop(correlation_id, None)
                while not waiting.empty():
                    waiting.get_nowait()
                reply = {
                    "ok": False,
                    "error": {"code": StreamOverflow.code, "message": "replies came faster than read"},
                }
            waiting.put_nowait(reply)
        elif not waiting.done():
            waiting.set_result(reply)

    async def close(self) -> None:
        for waiting in self._pending.values():
            if isinstance(waiting, asyncio.Future) and not waiting.done():
                waiting.cancel()
        self._pending.clear()


class _Raw(RootModel[dict[str, Any]]):
    """A result taken as it came."""


def result_of(reply: dict[str, Any], result: type[R]) -> R:
    """A reply's result as `result`; an error reply raised as its error."""
    if reply.get("ok") is True:
        return result.model_validate(reply["result"])
    error = reply.get("error") or {}
    code, text = str(error.get("code", "unknown")), str(error.get("message", reply))
    raise error_for(code, text)


def _mismatch(message: AbstractIncomingMessage) -> str:
    theirs = (message.headers or {}).get(version.HEADER)
    return f"the orchestrator speaks contract {theirs!r}, this client {version.VERSION} (another major version)"
