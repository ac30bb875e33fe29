"""The reference client of site files and logs over the bus, for Director's developers (and what
the tests and the benchmark use).

    async with await FilesClient.connect("amqp://director:...@broker/") as files:
        page = await files.list(site_id, "public")
        await files.write(site_id, "public/index.html", b"<h1>hello</h1>")
        data = await files.read_all(site_id, "public/index.html")
        async for chunk in files.archive(site_id, "public"):
            ...
        async with files.follow(site_id, lines=10) as follow:
            async for update in follow:
                ...

Two reply styles: RabbitMQ's direct reply-to (the default: no queue to declare; requests and
replies share one channel, which must not be in confirm mode) or a named reply queue
`director.replies.<name>` the client declares (exclusive, deleted with the connection;
requests are then published with confirms, so a full request queue is an error at once).

Every operation raises `FilesError` (with the reply's `code`) when the orchestrator refuses it,
and `TimeoutError` when no reply came in time.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import IO, Any, Self

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractIncomingMessage

from orchestrator_contract.files import (
    ArchiveChunk,
    DeleteResult,
    Entry,
    EntryResult,
    ListResult,
    LogLine,
    LogsResult,
    LogsStopResult,
    LogsUpdate,
    ReadResult,
    StatResult,
    UsageResult,
    WriteResult,
)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
DEFAULT_CHUNK = 1024 * 1024


class FilesError(Exception):
    """The orchestrator refused the request; `code` is machine-readable (docs/files.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class FilesClient:
    def __init__(
        self,
        connection: AbstractConnection,
        *,
        exchange: str = "director.files",
        reply_queue: str | None = None,
        user_id: str | None = "director",
        timeout: float = 30.0,
    ) -> None:
        """`reply_queue`: None for direct reply-to, else the name of a queue to declare
        (`director.replies.<anything>`)."""
        self.connection = connection
        self.exchange_name = exchange
        self.reply_queue = reply_queue
        self.user_id = user_id
        self.timeout = timeout
        self._pending: dict[str, asyncio.Future[dict[str, Any]] | asyncio.Queue[dict[str, Any]]] = {}
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._reply_to = ""

    @classmethod
    async def connect(cls, url: str, **options: Any) -> Self:
        client = cls(await aio_pika.connect_robust(url), **options)
        await client.start()
        return client

    async def start(self) -> None:
        # Direct reply-to: publish on the channel that consumes the replies, without confirms
        # (RabbitMQ 3.x delivers no direct reply to a channel in confirm mode).
        direct = self.reply_queue is None
        consuming = await self.connection.channel(publisher_confirms=False)
        if direct:
            queue = await consuming.get_queue(DIRECT_REPLY_TO, ensure=False)
            self._reply_to = DIRECT_REPLY_TO
            self._channel = consuming
        else:
            assert self.reply_queue is not None
            queue = await consuming.declare_queue(self.reply_queue, exclusive=True, auto_delete=True)
            self._reply_to = self.reply_queue
            self._channel = await self.connection.channel(publisher_confirms=True)
        await queue.consume(self._on_reply, no_ack=True)
        self._exchange = await self._channel.get_exchange(self.exchange_name, ensure=False)

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- one request, one reply --------------------------------------------------------------------

    async def request(self, op: str, body: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send `op` with `body`; the reply's `result` (FilesError for an error reply)."""
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            await self._publish(op, body, correlation_id)
            reply = await asyncio.wait_for(future, timeout or self.timeout)
        finally:
            self._pending.pop(correlation_id, None)
        return _result(reply)

    async def _publish(self, op: str, body: Mapping[str, Any], correlation_id: str) -> None:
        assert self._exchange is not None, "start() first"
        message = aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            correlation_id=correlation_id,
            reply_to=self._reply_to,
            message_id=str(uuid.uuid4()),
            user_id=self.user_id,
        )
        await self._exchange.publish(message, op, mandatory=False)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiting = self._pending.get(message.correlation_id or "")
        if waiting is None:
            return  # an answer nobody waits for any more
        reply = json.loads(message.body)
        if isinstance(waiting, asyncio.Queue):
            waiting.put_nowait(reply)
        elif not waiting.done():
            waiting.set_result(reply)

    # --- operations --------------------------------------------------------------------------------

    async def list(self, site_id: int, path: str = "", cursor: str | None = None, limit: int = 200) -> ListResult:
        body = {"site_id": site_id, "path": path, "cursor": cursor, "limit": limit}
        return ListResult.model_validate(await self.request("files.list", body))

    async def list_all(self, site_id: int, path: str = "", limit: int = 1000) -> AsyncIterator[Entry]:
        """Every entry of the directory, page by page."""
        cursor = None
        while True:
            page = await self.list(site_id, path, cursor, limit)
            for entry in page.entries:
                yield entry
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def stat(self, site_id: int, path: str = "") -> StatResult:
        return StatResult.model_validate(await self.request("files.stat", {"site_id": site_id, "path": path}))

    async def read(
        self, site_id: int, path: str, offset: int = 0, length: int | None = None
    ) -> tuple[bytes, ReadResult]:
        body = {"site_id": site_id, "path": path, "offset": offset, "length": length}
        result = ReadResult.model_validate(await self.request("files.read", body))
        return base64.b64decode(result.data), result

    async def download(
        self, site_id: int, path: str, *, chunk: int = DEFAULT_CHUNK, window: int = 4
    ) -> AsyncIterator[bytes]:
        """The file's bytes in order, `window` reads in flight; FilesError(`precondition_failed`)
        when the file changes meanwhile."""
        etag: str | None = None
        offset = 0
        inflight: builtins.list[asyncio.Task[tuple[bytes, ReadResult]]] = []
        ended = False
        try:
            while True:
                while not ended and len(inflight) < window:
                    inflight.append(asyncio.create_task(self.read(site_id, path, offset, chunk)))
                    offset += chunk
                if not inflight:
                    return
                data, result = await inflight.pop(0)
                if etag is None:
                    etag = result.etag
                elif result.etag != etag:
                    raise FilesError("precondition_failed", f"{path} changed during the download")
                if data:
                    yield data
                if result.eof or len(data) < chunk:
                    ended = True
                    for task in inflight:
                        task.cancel()
                    inflight.clear()
        finally:
            for task in inflight:
                task.cancel()

    async def read_all(self, site_id: int, path: str, **options: Any) -> bytes:
        return b"".join([piece async for piece in self.download(site_id, path, **options)])

    async def write(
        self,
        site_id: int,
        path: str,
        data: bytes | IO[bytes],
        *,
        chunk: int = DEFAULT_CHUNK,
        window: int = 8,
        if_match: str | None = None,
        if_none_match: bool = False,
        mode: int | None = None,
    ) -> WriteResult:
        """Upload `data` (bytes, or a binary file read a chunk at a time) as `path`: chunks with
        `window` in flight, the last one `final`; the file appears whole or not at all."""
        upload_id = str(uuid.uuid4())
        source = _pieces(data, chunk)
        offset = 0
        inflight: builtins.list[asyncio.Task[dict[str, Any]]] = []
        try:
            piece = next(source, b"")
            while True:
                following = next(source, None)
                final = following is None
                body = {
                    "site_id": site_id,
                    "path": path,
                    "upload_id": upload_id,
                    "offset": offset,
                    "data": base64.b64encode(piece).decode("ascii"),
                    "final": final,
                    "if_match": if_match,
                    "if_none_match": if_none_match,
                    "mode": mode,
                }
                inflight.append(asyncio.create_task(self.request("files.write", body)))
                offset += len(piece)
                if final:
                    break
                piece = following
                while len(inflight) >= window:
                    await inflight.pop(0)
            results = [await task for task in inflight]
            return WriteResult.model_validate(results[-1])
        finally:
            for task in inflight:
                task.cancel()

    async def mkdir(self, site_id: int, path: str, *, parents: bool = False, mode: int | None = None) -> Entry:
        body = {"site_id": site_id, "path": path, "parents": parents, "mode": mode}
        return EntryResult.model_validate(await self.request("files.mkdir", body)).entry

    async def rename(self, site_id: int, path: str, to: str, *, overwrite: bool = False) -> Entry:
        body = {"site_id": site_id, "path": path, "to": to, "overwrite": overwrite}
        return EntryResult.model_validate(await self.request("files.rename", body)).entry

    async def delete(self, site_id: int, path: str, *, recursive: bool = False) -> int:
        body = {"site_id": site_id, "path": path, "recursive": recursive}
        return DeleteResult.model_validate(await self.request("files.delete", body)).deleted

    async def chmod(self, site_id: int, path: str, mode: int) -> Entry:
        body = {"site_id": site_id, "path": path, "mode": mode}
        return EntryResult.model_validate(await self.request("files.chmod", body)).entry

    async def usage(self, site_id: int, path: str = "") -> UsageResult:
        return UsageResult.model_validate(await self.request("files.usage", {"site_id": site_id, "path": path}))

    async def logs_tail(self, site_id: int, lines: int = 100) -> builtins.list[LogLine]:
        result = await self.request("logs.tail", {"site_id": site_id, "lines": lines})
        return LogsResult.model_validate(result).lines

    # --- streams -----------------------------------------------------------------------------------

    async def archive(self, site_id: int, path: str = "") -> AsyncIterator[bytes]:
        """A zip of the directory, chunk by chunk; its sha256 is checked at the end."""
        async with self._stream("files.archive", {"site_id": site_id, "path": path}) as replies:
            digest, seq = hashlib.sha256(), 0
            while True:
                chunk = ArchiveChunk.model_validate(_result(await asyncio.wait_for(replies.get(), self.timeout)))
                if chunk.seq != seq:
                    raise FilesError("io_error", f"archive chunk {chunk.seq} arrived, {seq} expected")
                data = base64.b64decode(chunk.data)
                digest.update(data)
                yield data
                if chunk.last:
                    if chunk.sha256 != digest.hexdigest():
                        raise FilesError("io_error", "the archive's sha256 does not match what arrived")
                    return
                seq += 1

    def follow(self, site_id: int, lines: int = 0) -> LogFollow:
        """A `logs.follow`: `async with client.follow(7) as follow: async for update in follow:`."""
        return LogFollow(self, site_id, lines)

    @contextlib.asynccontextmanager
    async def _stream(self, op: str, body: Mapping[str, Any]) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        correlation_id = uuid.uuid4().hex
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending[correlation_id] = replies
        try:
            await self._publish(op, body, correlation_id)
            yield replies
        finally:
            self._pending.pop(correlation_id, None)


class LogFollow:
    """The replies of one `logs.follow`, in `seq` order, until the stream's last one."""

    def __init__(self, client: FilesClient, site_id: int, lines: int) -> None:
        self.client = client
        self.site_id = site_id
        self.lines = lines
        self.stream_id = uuid.uuid4()
        self.ended: LogsUpdate | None = None
        self._replies: asyncio.Queue[dict[str, Any]] | None = None
        self._context: contextlib.AbstractAsyncContextManager[asyncio.Queue[dict[str, Any]]] | None = None

    async def __aenter__(self) -> Self:
        body = {"site_id": self.site_id, "stream_id": str(self.stream_id), "lines": self.lines}
        self._context = self.client._stream("logs.follow", body)
        self._replies = await self._context.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ended is None:
            with contextlib.suppress(FilesError, TimeoutError):
                await self.stop()
        assert self._context is not None
        await self._context.__aexit__(None, None, None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LogsUpdate:
        update = await self.next(self.client.timeout)
        if update is None:
            raise StopAsyncIteration
        return update

    async def next(self, timeout: float) -> LogsUpdate | None:
        """The next reply (None: the stream ended before); TimeoutError if none came in time."""
        if self.ended is not None:
            return None
        assert self._replies is not None
        update = LogsUpdate.model_validate(_result(await asyncio.wait_for(self._replies.get(), timeout)))
        if update.last:
            self.ended = update
        return update

    async def stop(self) -> bool:
        body = {"site_id": self.site_id, "stream_id": str(self.stream_id)}
        return LogsStopResult.model_validate(await self.client.request("logs.stop", body)).stopped


def _result(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("ok") is True:
        result: dict[str, Any] = reply["result"]
        return result
    error = reply.get("error") or {}
    raise FilesError(str(error.get("code", "unknown")), str(error.get("message", reply)))


def _pieces(data: bytes | IO[bytes], size: int) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])
        return
    while piece := data.read(size):
        yield piece
