"""A log follow's thread: Docker's log stream (one connection) handed line by line to the follow's
task on the event loop through a small queue, so a slow requester slows the read, not our memory;
reconnecting while the service is there when Docker ends the stream or it falls silent.

Lines of different tasks arrive out of time order (an old task draining while its replacement
starts, tasks on other nodes), so a reconnect resumes `OVERLAP_SECONDS` before the newest line
passed on and skips the lines passed on already, by task and time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.errors import FileRefused, OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.swarm.logs import LogRecord, ServiceLogs
from orchestrator_contract.codes import ErrorCode

if TYPE_CHECKING:
    from orchestrator.files.streams import Follow

log = logging.getLogger("orchestrator.files")
RECONNECT_SECONDS = 1.0
OVERLAP_SECONDS = 5.0
# (task, time) of the lines passed on lately; past it a reconnect may pass a line on twice, never lose it.
RECENT_LINES = 4096


@dataclass(frozen=True)
class End:
    """The last item of a follow's queue: why it ended."""

    reason: str


def pump(logs: ServiceLogs, follow: Follow, service: str, version: str, backlog: int, handoff: Handoff) -> None:
    """The follow's thread: Docker's stream into the queue, reconnecting (from the last line
    seen) when Docker ends it while the service is still there."""
    put, tell_opened = handoff.put, handoff.tell_opened
    since: int | None = None  # where a reconnect resumes (ns)
    newest: int | None = None
    recent: OrderedDict[tuple[str, int], None] = OrderedDict()
    first = True
    try:
        while not follow.stopped.is_set():
            began = time.time_ns()
            try:
                stream = logs.follow(service, version, backlog, since)
            except OrchestratorError as exc:
                if first:
                    tell_opened(exc)
                    return
                put(End(f"docker: {exc.message}"))
                return
            if stream is None:
                gone = FileRefused(f"{service} does not exist", code=ErrorCode.SITE_NOT_FOUND)
                if first:
                    tell_opened(gone)
                else:
                    put(End("the site's service is gone"))
                return
            follow.docker = stream
            if first:
                tell_opened(None)
                first = False
            if follow.stopped.is_set():
                stream.close()
                return
            for record in stream:
                key = (record.task, record.ns)
                if key in recent:
                    continue  # passed on before the reconnect
                recent[key] = None
                if len(recent) > RECENT_LINES:
                    recent.popitem(last=False)
                newest = record.ns if newest is None else max(newest, record.ns)
                if not put(record):
                    return
            stream.close()
            if follow.stopped.is_set():
                return
            since = began if newest is None else newest - int(OVERLAP_SECONDS * 1e9)
            if not logs.exists(service, version):
                put(End("the site's service is gone"))
                return
            follow.stopped.wait(RECONNECT_SECONDS)
    except Exception as exc:  # a bug or Docker gone: the follow ends, saying why
        log.warning("log follow failed", extra=fields(stream_id=str(follow.stream_id), error=repr(exc)))
        if first:
            tell_opened(exc)
        else:
            put(End(f"reading the logs failed: {exc!r}"))


class Handoff:
    """From a follow's thread to the event loop: lines into its queue (given up once the follow
    stops), and whether the follow opened."""

    def __init__(
        self,
        follow: Follow,
        loop: asyncio.AbstractEventLoop,
        lines: asyncio.Queue[LogRecord | End],
        opened: asyncio.Future[None],
    ) -> None:
        self.follow, self.loop, self.lines, self.opened = follow, loop, lines, opened

    def put(self, item: LogRecord | End) -> bool:
        future = asyncio.run_coroutine_threadsafe(self.lines.put(item), self.loop)
        while not self.follow.stopped.is_set():
            try:
                future.result(timeout=0.5)
                return True
            except TimeoutError:
                continue
        future.cancel()
        return False

    def tell_opened(self, error: BaseException | None) -> None:
        def settle() -> None:
            if self.opened.done():
                return
            if error is None:
                self.opened.set_result(None)
            else:
                self.opened.set_exception(error)

        self.loop.call_soon_threadsafe(settle)
