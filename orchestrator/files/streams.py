"""Streams of replies to one request: a zip of a directory (`files.archive`) and a site's log
lines as they come (`logs.follow`).

Each stream is a task of its own (the request is acked when the stream starts: a follow may run
for an hour, past any broker's patience with an unacked message), bounded in all and per site:
its slot (and a follow's stream id) is taken before the first await, so requests arriving
together cannot all pass the count. Each stream publishes on a channel of its own (`Replies`),
through a `Send` that says whether the requester still listens (a follow whose reply queue is
gone ends): whatever closes one stream's channel ends that stream only. A follow reads Docker's
log stream in a thread of its own (one connection at a time, asked again when it ends or falls
silent) and hands lines to its task through a small queue, so a slow requester slows the read,
not our memory; a batch is bounded in lines and in bytes (`reply_bytes`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from orchestrator.bus.outcomes import Requester
from orchestrator.bus.replies import error_reply, ok_reply
from orchestrator.errors import FileRefused, OrchestratorError
from orchestrator.files.archive import ZipStream
from orchestrator.files.bounds import ReplySpace
from orchestrator.files.follows import End, Handoff, pump
from orchestrator.files.worker import SiteRef, Worker
from orchestrator.logging_setup import fields
from orchestrator.swarm.logs import LogRecord, LogStream, ServiceLogs
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import ArchiveChunk, LogLine, LogsUpdate

log = logging.getLogger("orchestrator.files")

# (reply_to, correlation_id, body) -> whether the reply was routed (False: the requester is gone).
Send = Callable[[str, str, bytes], Awaitable[bool]]
# A stream's own way to publish: a channel opened for it, closed when it ends.
Replies = Callable[[], AbstractAsyncContextManager[Send]]
# A follow gathers lines this long (or this many) into one reply.
BATCH_SECONDS = 0.1
BATCH_LINES = 200
QUEUED_LINES = 1000


@dataclass(eq=False)  # identity: a stream is one running thing
class Stream:
    kind: str
    site_id: int
    requester: Requester
    task: asyncio.Task[None] | None = None
    reason: str | None = None  # why we ended it; None: it ended by itself
    send: Send | None = None  # the stream's own channel, while it runs


@dataclass(eq=False)
class Follow(Stream):
    stream_id: uuid.UUID = field(default_factory=uuid.uuid4)
    seq: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)
    docker: LogStream | None = None

    def update(self, lines: list[LogLine], last: bool = False, reason: str | None = None) -> bytes:
        update = LogsUpdate(stream_id=self.stream_id, seq=self.seq, lines=lines, last=last, reason=reason)
        self.seq += 1
        return ok_reply(update)


def log_line(record: LogRecord) -> LogLine:
    return LogLine(ts=record.ts, task=record.task, text=record.text, truncated=record.truncated)


async def _stop_pump(follow: Follow) -> None:
    follow.stopped.set()
    if follow.docker is not None:
        follow.docker.close()  # unblocks the thread's read (closing twice is nothing)


def _not_ended(stream: Stream) -> None:
    """A stream ended while it was starting (its site deleted, `logs.stop`, shutdown) never runs."""
    if stream.reason is not None:
        raise FileRefused(f"the {stream.kind} was ended before it started: {stream.reason}", code=ErrorCode.IO_ERROR)


class Streams:
    def __init__(
        self,
        worker: Worker,
        logs: ServiceLogs,
        replies: Replies,
        *,
        max_streams: int,
        max_per_site: int,
        follow_seconds: float,
        reply_bytes: int,
    ) -> None:
        self._worker = worker
        self._logs = logs
        self._replies = replies
        self._max = max_streams
        self._max_per_site = max_per_site
        self._follow_seconds = follow_seconds
        self._reply_bytes = reply_bytes
        self._streams: set[Stream] = set()
        self._follows: dict[uuid.UUID, Follow] = {}

    # --- bookkeeping ---------------------------------------------------------------------------

    def _reserve(self, stream: Stream) -> None:
        """Count the stream in, or refuse it (`busy`): synchronous, so no request slips past the
        count while another one awaits (its slot is freed by `_release` if it never starts)."""
        if len(self._streams) >= self._max:
            raise FileRefused(f"{len(self._streams)} streams are running (FILES_MAX_STREAMS)", code=ErrorCode.BUSY)
        if sum(1 for s in self._streams if s.site_id == stream.site_id) >= self._max_per_site:
            raise FileRefused(
                f"site {stream.site_id} has {self._max_per_site} streams running (FILES_MAX_STREAMS_PER_SITE)",
                code=ErrorCode.BUSY,
            )
        self._streams.add(stream)

    def _release(self, stream: Stream) -> None:
        self._streams.discard(stream)
        if isinstance(stream, Follow) and self._follows.get(stream.stream_id) is stream:
            del self._follows[stream.stream_id]

    def _run(self, stream: Stream, body: Callable[[], Awaitable[None]], cleanup: Callable[[], Awaitable[None]]) -> None:
        """The stream's task: its own channel open while `body` runs; then, whatever happened
        (its channel never opened, it was cancelled), `cleanup`, and its slot is freed."""

        async def run() -> None:
            try:
                async with self._replies() as send:
                    stream.send = send
                    await body()
            except Exception as exc:  # its channel could not be opened or closed (the broker is away)
                extra = fields(kind=stream.kind, site_id=stream.site_id, error=repr(exc))
                log.warning("a stream ended early", extra=extra)
            finally:
                stream.send = None
                try:
                    await cleanup()
                finally:
                    self._release(stream)

        stream.task = asyncio.create_task(run())

    async def _end(self, streams: list[Stream], reason: str) -> None:
        """End running streams; one still starting (no task yet) is refused once it has started."""
        for stream in streams:
            stream.reason = stream.reason or reason
            if isinstance(stream, Follow):
                stream.stopped.set()
            if stream.task is not None:
                stream.task.cancel()
        if ending := [stream.task for stream in streams if stream.task is not None]:
            await asyncio.wait(ending)  # their ends, not their CancelledErrors: ours still reach us

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
        stream = Stream("archive", site.id, requester)
        self._reserve(stream)
        try:
            zipped = await self._worker.in_site(site, make)
            try:
                first = await self._worker.as_site(site, zipped.next_chunk)
                _not_ended(stream)
            except BaseException:
                await self._worker.as_site(site, zipped.close)
                raise
        except BaseException:
            self._release(stream)
            raise
        self._run(
            stream, lambda: self._archive(site, zipped, first, stream), lambda: self._worker.as_site(site, zipped.close)
        )

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

    async def _reply(self, stream: Stream, body: bytes) -> bool:
        if stream.send is None:
            return False
        return await stream.send(stream.requester.reply_to, stream.requester.correlation_id, body)

    # --- log follows -----------------------------------------------------------------------------

    async def follow(
        self, site: SiteRef, service: str, stream_id: uuid.UUID, backlog: int, requester: Requester
    ) -> None:
        """Start following the service's logs; the first reply (seq 0) says it runs."""
        if stream_id in self._follows:
            raise FileRefused(f"stream {stream_id} is running already", code=ErrorCode.INVALID_REQUEST)
        follow = Follow("follow", site.id, requester, stream_id=stream_id)
        self._reserve(follow)
        self._follows[stream_id] = follow  # a second request with this id is refused from now on
        try:
            version = await self._logs.api_version()
            loop = asyncio.get_running_loop()
            lines: asyncio.Queue[LogRecord | End] = asyncio.Queue(QUEUED_LINES)
            opened: asyncio.Future[None] = loop.create_future()
            thread = threading.Thread(
                target=pump,
                args=(self._logs, follow, service, version, backlog, Handoff(follow, loop, lines, opened)),
                name=f"follow-{stream_id}",
                daemon=True,
            )
            thread.start()
            try:
                await opened
                _not_ended(follow)
            except BaseException:
                follow.stopped.set()
                raise
        except BaseException:
            self._release(follow)
            raise
        self._run(follow, lambda: self._forward(follow, lines), lambda: _stop_pump(follow))

    async def stop_follow(self, stream_id: uuid.UUID, site_id: int | None) -> bool:
        follow = self._follows.get(stream_id)
        if follow is None or (site_id is not None and follow.site_id != site_id):
            return False
        await self._end([follow], "stopped by logs.stop")
        return True

    async def _forward(self, follow: Follow, lines: asyncio.Queue[LogRecord | End]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._follow_seconds
        gone = False
        reason = None
        held: LogLine | None = None  # a line that did not fit the last batch: the next one's first
        try:
            while reason is None:
                batch: list[LogLine] = []
                space = ReplySpace(self._reply_bytes)
                if held is not None:
                    space.take(held)
                    batch.append(held)
                    held = None
                window = loop.time() + BATCH_SECONDS
                # The first reply goes out after one window even if empty: it says the follow runs.
                wait_until = window if follow.seq == 0 else deadline
                while len(batch) < BATCH_LINES:
                    timeout = (window if batch else wait_until) - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        async with asyncio.timeout(timeout):
                            item = await lines.get()
                    except TimeoutError:
                        break
                    if isinstance(item, End):
                        reason = item.reason
                        break
                    line = log_line(item)
                    if not space.take(line):  # full: this batch goes now, the line opens the next
                        held = line
                        break
                    batch.append(line)
                if loop.time() >= deadline and reason is None:
                    reason = f"followed for {self._follow_seconds:g} s (LOGS_FOLLOW_MAX_SECONDS)"
                if (batch or follow.seq == 0) and not await self._reply(follow, follow.update(batch)):
                    gone = True
                    return
            if held is not None and not await self._reply(follow, follow.update([held])):
                gone = True
                return
        except asyncio.CancelledError:
            reason = follow.reason or "ended"
        finally:
            await _stop_pump(follow)
            if not gone:
                await self._reply(follow, follow.update([], last=True, reason=reason))
            log.info(
                "log follow ended",
                extra=fields(stream_id=str(follow.stream_id), site_id=follow.site_id, reason=reason or "gone"),
            )
