"""Streams of replies to one request: a zip of a directory (`files.archive`) and a site's log
lines as they come (`logs.follow`).

Each stream is a task of its own (the request is acked when the stream starts: a follow may run
for an hour, past any broker's patience with an unacked message), bounded in all and per site.
Replies go through `Send`, which says whether the requester still listens: a follow whose reply
queue is gone ends. A follow reads Docker's log stream in a thread of its own (one connection,
no read timeout) and hands lines to its task through a small queue, so a slow requester slows
the read, not our memory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from orchestrator.contract.files import ArchiveChunk, LogLine, LogsUpdate, error_reply, ok_reply
from orchestrator.errors import ErrorCode, FileRefused, OrchestratorError
from orchestrator.files.archive import ZipStream
from orchestrator.files.worker import SiteRef, Worker
from orchestrator.logs import fields
from orchestrator.swarm.logs import LogRecord, LogStream, ServiceLogs

log = logging.getLogger("orchestrator.files")

# (reply_to, correlation_id, body) -> whether the reply was routed (False: the requester is gone).
Send = Callable[[str, str, bytes], Awaitable[bool]]
# A follow gathers lines this long (or this many) into one reply.
BATCH_SECONDS = 0.1
BATCH_LINES = 200
QUEUED_LINES = 1000
RECONNECT_SECONDS = 1.0


@dataclass(frozen=True)
class Requester:
    reply_to: str
    correlation_id: str


@dataclass(eq=False)  # identity: a stream is one running thing
class Stream:
    kind: str
    site_id: int
    requester: Requester
    task: asyncio.Task[None] | None = None
    reason: str | None = None  # why we ended it; None: it ended by itself


@dataclass(eq=False)
class Follow(Stream):
    stream_id: uuid.UUID = field(default_factory=uuid.uuid4)
    seq: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)
    docker: LogStream | None = None

    def update(self, lines: list[LogRecord], last: bool = False, reason: str | None = None) -> bytes:
        shown = [LogLine(ts=r.ts, task=r.task, text=r.text) for r in lines]
        update = LogsUpdate(stream_id=self.stream_id, seq=self.seq, lines=shown, last=last, reason=reason)
        self.seq += 1
        return ok_reply(update)


@dataclass(frozen=True)
class _End:
    reason: str


class Streams:
    def __init__(
        self,
        worker: Worker,
        logs: ServiceLogs,
        send: Send,
        *,
        max_streams: int,
        max_per_site: int,
        follow_seconds: float,
    ) -> None:
        self._worker = worker
        self._logs = logs
        self._send = send
        self._max = max_streams
        self._max_per_site = max_per_site
        self._follow_seconds = follow_seconds
        self._streams: set[Stream] = set()
        self._follows: dict[uuid.UUID, Follow] = {}

    # --- bookkeeping ---------------------------------------------------------------------------

    def _admit(self, site_id: int) -> None:
        if len(self._streams) >= self._max:
            raise FileRefused(f"{len(self._streams)} streams are running (FILES_MAX_STREAMS)", code=ErrorCode.BUSY)
        if sum(1 for s in self._streams if s.site_id == site_id) >= self._max_per_site:
            raise FileRefused(
                f"site {site_id} has {self._max_per_site} streams running (FILES_MAX_STREAMS_PER_SITE)",
                code=ErrorCode.BUSY,
            )

    def _run(self, stream: Stream, body: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await body
            finally:
                self._streams.discard(stream)

        self._streams.add(stream)
        stream.task = asyncio.create_task(run())

    async def _end(self, streams: list[Stream], reason: str) -> None:
        for stream in streams:
            stream.reason = stream.reason or reason
            if stream.task is not None:
                stream.task.cancel()
        for stream in streams:
            if stream.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await stream.task

    async def close_site(self, site_id: int) -> int:
        """End the site's streams (it is being deleted); their requesters hear why."""
        doomed = [s for s in self._streams if s.site_id == site_id]
        await self._end(doomed, f"site {site_id} was deleted")
        return len(doomed)

    async def stop(self) -> None:
        await self._end(list(self._streams), "the orchestrator stopped")

    # --- archives ------------------------------------------------------------------------------

    async def archive(self, site: SiteRef, make: Callable[[int], ZipStream], requester: Requester) -> None:
        """Start streaming a zip; its first chunk is made before this returns (so a bad path is
        the request's own error reply)."""
        self._admit(site.id)
        zipped = await self._worker.in_site(site, make)
        try:
            first = await self._worker.as_site(site, zipped.next_chunk)
        except BaseException:
            await self._worker.as_site(site, zipped.close)
            raise
        stream = Stream("archive", site.id, requester)
        self._run(stream, self._archive(site, zipped, first, stream))

    async def _archive(self, site: SiteRef, zipped: ZipStream, chunk: bytes | None, stream: Stream) -> None:
        digest, size, seq = hashlib.sha256(), 0, 0
        try:
            while chunk is not None:
                following = await self._worker.as_site(site, zipped.next_chunk)
                digest.update(chunk)
                size += len(chunk)
                last = following is None
                reply = ArchiveChunk(
                    seq=seq,
                    data=base64.b64encode(chunk).decode("ascii"),
                    last=last,
                    sha256=digest.hexdigest() if last else None,
                    size=size if last else None,
                )
                if not await self._reply(stream, ok_reply(reply)):
                    return  # the requester is gone
                seq, chunk = seq + 1, following
        except asyncio.CancelledError:
            await self._reply(stream, error_reply(ErrorCode.IO_ERROR, f"the archive was ended: {stream.reason}"))
        except OrchestratorError as exc:
            await self._reply(stream, error_reply(exc.code, exc.message))
        finally:
            await self._worker.as_site(site, zipped.close)

    async def _reply(self, stream: Stream, body: bytes) -> bool:
        return await self._send(stream.requester.reply_to, stream.requester.correlation_id, body)

    # --- log follows -----------------------------------------------------------------------------

    async def follow(
        self, site: SiteRef, service: str, stream_id: uuid.UUID, backlog: int, requester: Requester
    ) -> None:
        """Start following the service's logs; the first reply (seq 0) says it runs."""
        if stream_id in self._follows:
            raise FileRefused(f"stream {stream_id} is running already", code=ErrorCode.INVALID_REQUEST)
        self._admit(site.id)
        version = await self._logs.api_version()
        follow = Follow("follow", site.id, requester, stream_id=stream_id)
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[LogRecord | _End] = asyncio.Queue(QUEUED_LINES)
        opened: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=self._pump,
            args=(follow, service, version, backlog, loop, lines, opened),
            name=f"follow-{stream_id}",
            daemon=True,
        )
        thread.start()
        try:
            await opened
        except BaseException:
            follow.stopped.set()
            raise
        self._follows[stream_id] = follow
        self._run(follow, self._forward(follow, lines))

    async def stop_follow(self, stream_id: uuid.UUID, site_id: int | None) -> bool:
        follow = self._follows.get(stream_id)
        if follow is None or (site_id is not None and follow.site_id != site_id):
            return False
        await self._end([follow], "stopped by logs.stop")
        return True

    async def _forward(self, follow: Follow, lines: asyncio.Queue[LogRecord | _End]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._follow_seconds
        gone = False
        reason = None
        try:
            while reason is None:
                batch: list[LogRecord] = []
                window = loop.time() + BATCH_SECONDS
                # The first reply goes out after one window even if empty: it says the follow runs.
                wait_until = window if follow.seq == 0 else deadline
                while len(batch) < BATCH_LINES:
                    timeout = (window if batch else wait_until) - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(lines.get(), timeout)
                    except TimeoutError:
                        break
                    if isinstance(item, _End):
                        reason = item.reason
                        break
                    batch.append(item)
                if loop.time() >= deadline and reason is None:
                    reason = f"followed for {self._follow_seconds:g} s (LOGS_FOLLOW_MAX_SECONDS)"
                if (batch or follow.seq == 0) and not await self._reply(follow, follow.update(batch)):
                    gone = True
                    return
        except asyncio.CancelledError:
            reason = follow.reason or "ended"
        finally:
            follow.stopped.set()
            if follow.docker is not None:
                follow.docker.close()  # unblocks the thread's read
            self._follows.pop(follow.stream_id, None)
            if not gone:
                await self._reply(follow, follow.update([], last=True, reason=reason))
            log.info(
                "log follow ended",
                extra=fields(stream_id=str(follow.stream_id), site_id=follow.site_id, reason=reason or "gone"),
            )

    def _pump(
        self,
        follow: Follow,
        service: str,
        version: str,
        backlog: int,
        loop: asyncio.AbstractEventLoop,
        lines: asyncio.Queue[LogRecord | _End],
        opened: asyncio.Future[None],
    ) -> None:
        """The follow's thread: Docker's stream into the queue, reconnecting (from the last line
        seen) when Docker ends it while the service is still there."""

        def put(item: LogRecord | _End) -> bool:
            future = asyncio.run_coroutine_threadsafe(lines.put(item), loop)
            while not follow.stopped.is_set():
                try:
                    future.result(timeout=0.5)
                    return True
                except TimeoutError:
                    continue
            future.cancel()
            return False

        def tell_opened(error: BaseException | None) -> None:
            def settle() -> None:
                if opened.done():
                    return
                if error is None:
                    opened.set_result(None)
                else:
                    opened.set_exception(error)

            loop.call_soon_threadsafe(settle)

        since: int | None = None
        first = True
        try:
            while not follow.stopped.is_set():
                began = time.time_ns()
                try:
                    stream = self._logs.follow(service, version, backlog, since)
                except OrchestratorError as exc:
                    if first:
                        tell_opened(exc)
                        return
                    put(_End(f"docker: {exc.message}"))
                    return
                if stream is None:
                    gone = FileRefused(f"{service} does not exist", code=ErrorCode.SITE_NOT_FOUND)
                    if first:
                        tell_opened(gone)
                    else:
                        put(_End("the site's service is gone"))
                    return
                follow.docker = stream
                if first:
                    tell_opened(None)
                    first = False
                if follow.stopped.is_set():
                    stream.close()
                    return
                for record in stream:
                    if since is not None and record.ns <= since:
                        continue  # seen before the reconnect
                    since = record.ns
                    if not put(record):
                        return
                stream.close()
                if follow.stopped.is_set():
                    return
                since = since if since is not None else began
                if not self._logs.exists(service, version):
                    put(_End("the site's service is gone"))
                    return
                follow.stopped.wait(RECONNECT_SECONDS)
        except Exception as exc:  # a bug or Docker gone: the follow ends, saying why
            log.warning("log follow failed", extra=fields(stream_id=str(follow.stream_id), error=repr(exc)))
            if first:
                tell_opened(exc)
            else:
                put(_End(f"reading the logs failed: {exc!r}"))
