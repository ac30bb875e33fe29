"""A log follow's thread (`files.follows.pump`) over a fake of Docker's service log streams: every
task's lines are passed on whatever their order, and a reconnect loses none and repeats none."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from orchestrator.bus.outcomes import Requester
from orchestrator.files.follows import OVERLAP_SECONDS, End, pump
from orchestrator.files.streams import Streams
from orchestrator.files.worker import SiteRef
from orchestrator.swarm.logs import LogRecord

S = 1_000_000_000


def line(task: str, second: float) -> LogRecord:
    return LogRecord(ns=int(second * S), task=task, text=f"{task} at {second}")


@dataclass
class FakeFollow:
    stopped: threading.Event = field(default_factory=threading.Event)
    docker: object = None
    stream_id: str = "a-follow"


class Stream:
    """Lines, then the end of the stream; the last connection's end is the requester's stop."""

    def __init__(self, records: Iterable[LogRecord], stop: threading.Event | None) -> None:
        self.records, self.stop = list(records), stop

    def __iter__(self) -> Iterator[LogRecord]:
        yield from self.records
        if self.stop is not None:
            self.stop.set()

    def close(self) -> None:
        pass


class FakeLogs:
    """Each connection answers the next list of lines, then ends; after the last, the follow stops."""

    def __init__(
        self, requester: FakeFollow, connections: list[list[LogRecord]], starts: dict[str, int] | None = None
    ) -> None:
        self.requester, self.connections, self.starts = requester, connections, starts or {}
        self.since_asked: list[int | None] = []

    def follow(self, name: str, version: str, backlog: int, since_ns: int | None) -> Stream:
        self.since_asked.append(since_ns)
        records = self.connections.pop(0)
        return Stream(records, None if self.connections else self.requester.stopped)

    def task_starts(self, name: str, version: str) -> dict[str, int]:
        return self.starts


class Handoff:
    def __init__(self) -> None:
        self.passed: list[LogRecord | End] = []

    def put(self, item: LogRecord | End) -> bool:
        self.passed.append(item)
        return True

    def tell_opened(self, error: BaseException | None) -> None:
        assert error is None


def run(
    connections: list[list[LogRecord]], starts: dict[str, int] | None = None
) -> tuple[list[LogRecord | End], list[int | None]]:
    follow = FakeFollow()
    logs, handoff = FakeLogs(follow, connections, starts), Handoff()
    pump(logs, follow, "site_0001", "1.41", 3, handoff)  # type: ignore[arg-type]
    return handoff.passed, logs.since_asked


def test_a_replacement_tasks_lines_that_arrive_older_than_the_old_tasks_are_passed_on() -> None:
    # The old task drains (its lines at 10.0-10.9) while the new one starts; the new one's first
    # lines (10.2, 10.5) arrive after the old task's later ones.
    stream = [line("old", 10.0), line("old", 10.9), line("new", 10.2), line("new", 10.5), line("new", 11.0)]
    passed, _ = run([stream])
    assert passed == stream


def test_a_reconnect_resumes_before_the_newest_line_and_passes_each_line_once() -> None:
    first = [line("old", 100.0), line("old", 101.0)]
    # Docker answers from `since`: lines passed on already, and a new task's it had missed.
    second = [line("old", 100.0), line("old", 101.0), line("new", 99.5), line("new", 102.0)]
    passed, since = run([first, second])
    assert passed == [*first, line("new", 99.5), line("new", 102.0)]
    assert since == [None, int((101.0 - OVERLAP_SECONDS) * S)]


def test_a_reconnect_goes_back_to_the_start_of_a_task_whose_lines_never_came() -> None:
    """Docker's follow missed a task created after the follow opened; the old task's lines went on
    through its drain. The reconnect asks from the new task's creation, not 5 s before the newest
    line, so none of its first lines is lost."""
    now = time.time_ns() / S
    created = now + 1.0
    first = [line("old", created + t) for t in (0.0, 3.0, 6.0, 9.0)]
    second = [line("new", created + 0.5), *first, line("new", created + 12.0)]
    passed, since = run([first, second], starts={"new": int(created * S)})
    assert passed == [*first, line("new", created + 0.5), line("new", created + 12.0)]
    assert since == [None, int(created * S)]


def test_two_parts_of_one_long_line_are_both_passed_on() -> None:
    """Docker gives every part of a line it split the same time."""
    parts = [LogRecord(ns=5 * S, task="t", text="a" * 100), LogRecord(ns=5 * S, task="t", text="b" * 100)]
    passed, _ = run([parts])
    assert passed == parts


class Flood:
    """A task that logs without pause (a restart's new task, say)."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[LogRecord]:
        n = 0
        while not self.closed.is_set():
            n += 1
            yield LogRecord(ns=n, task="t", text=f"line {n}")
            time.sleep(0.0002)

    def close(self) -> None:
        self.closed.set()


class FloodLogs:
    async def api_version(self) -> str:
        return "1.41"

    def follow(self, name: str, version: str, backlog: int, since_ns: int | None) -> Flood:
        return Flood()

    def task_starts(self, name: str, version: str) -> dict[str, int]:
        return {}


async def test_a_stop_ends_a_follow_whatever_its_lines_are_doing() -> None:
    """A stop's cancellation met a line arriving at the same moment: Python 3.11's
    `asyncio.wait_for` returned the line and dropped the cancellation, and the follow went on
    (`logs.stop` answered only when a second stop came, 30 s later)."""

    @contextlib.asynccontextmanager
    async def replies() -> AsyncIterator[Callable[[str, str, bytes], Awaitable[bool]]]:
        async def send(reply_to: str, correlation_id: str, body: bytes) -> bool:
            return True

        yield send

    streams = Streams(
        None,  # type: ignore[arg-type]  # a follow touches no site file
        FloodLogs(),  # type: ignore[arg-type]
        replies,
        max_streams=4, max_per_site=4, follow_seconds=3600, reply_bytes=1 << 20,
    )  # fmt: skip
    for _ in range(60):
        stream_id = uuid.uuid4()
        await streams.follow(SiteRef(1, "site_0001", 1001), "site_0001", stream_id, 0, Requester("r", "c"))
        await asyncio.sleep(0.02)
        async with asyncio.timeout(5):
            assert await streams.stop_follow(stream_id, None)
