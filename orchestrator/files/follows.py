"""A log follow's thread: Docker's log stream (one connection) handed line by line to the follow's
task on the event loop through a small queue, so a slow requester slows the read, not our memory;
reconnecting while the service is there when Docker ends the stream or it falls silent.

Lines of different tasks arrive out of time order (an old task draining while its replacement
starts, tasks on other nodes), so a reconnect resumes `OVERLAP_SECONDS` before the newest line
passed on (or at the creation of a new task whose lines never came) and skips the lines passed on
already, by task, time and text."""

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
# The lines passed on lately; past it a reconnect may pass a line on twice, never lose it.
RECENT_LINES = 4096
RECENT_TASKS = 64  # the tasks whose lines came lately


@dataclass(frozen=True)
class End:
    """The last item of a follow's queue: why it ended."""

    reason: str


def pump(logs: ServiceLogs, follow: Follow, service: str, version: str, backlog: int, handoff: Handoff) -> None:
    """The follow's thread: Docker's stream into the queue, reconnecting when Docker ends it (or it
    falls silent) while the service is still there."""
    put, tell_opened = handoff.put, handoff.tell_opened
    since: int | None = None  # where a reconnect resumes (ns)
    passed = Passed()
    opened_at = time.time_ns()
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
                if passed.first_time(record) and not put(record):
                    return
            stream.close()
            if follow.stopped.is_set():
                return
            if (starts := logs.task_starts(service, version)) is None:
                put(End("the site's service is gone"))
                return
            since = passed.resume_at(began, opened_at, starts)
            follow.stopped.wait(RECONNECT_SECONDS)
    except Exception as exc:  # a bug or Docker gone: the follow ends, saying why
        log.warning("log follow failed", extra=fields(stream_id=str(follow.stream_id), error=repr(exc)))
        if first:
            tell_opened(exc)
        else:
            put(End(f"reading the logs failed: {exc!r}"))


class Passed:
    """What a follow passed on lately: its lines by (task, time, text), the tasks they came from,
    and the newest line's time."""

    def __init__(self) -> None:
        self.lines: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self.tasks: OrderedDict[str, None] = OrderedDict()
        self.newest: int | None = None

    def first_time(self, record: LogRecord) -> bool:
        """Whether the line is new (then it is remembered); False for one passed on already."""
        key = (record.task, record.ns, hash(record.text))
        if key in self.lines:
            return False
        self.lines[key] = None
        if len(self.lines) > RECENT_LINES:
            self.lines.popitem(last=False)
        self.tasks[record.task] = None
        self.tasks.move_to_end(record.task)
        if len(self.tasks) > RECENT_TASKS:
            self.tasks.popitem(last=False)
        self.newest = record.ns if self.newest is None else max(self.newest, record.ns)
        return True

    def resume_at(self, began: int, opened_at: int, starts: dict[str, int]) -> int:
        """Where a reconnect resumes: `OVERLAP_SECONDS` before the newest line passed on (or where
        the last stream began), and no later than the creation of a task that started after the
        follow opened and whose lines never came (Docker's follow missed it)."""
        since = began if self.newest is None else self.newest - int(OVERLAP_SECONDS * 1e9)
        missed = [start for task, start in starts.items() if start > opened_at and task not in self.tasks]
        return min([since, *missed])


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
