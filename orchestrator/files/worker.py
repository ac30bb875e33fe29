"""The threads that touch site files: a bounded pool, each job acting as its site's user.

The event loop never does file I/O; a job runs in one of `workers` threads with the thread's
filesystem uid/gid set to the site's for its duration (`confined.acting_as`), with the site
directory opened (as root, from the sites root, without following links) when it needs it.

One site's jobs hold at most `per_site` threads at once; its others wait their turn in the event
loop, holding no thread, so a site whose requests are slow (a huge directory kept changing, listed
again and again) leaves the other threads to the other sites. The pool takes jobs first come,
first served: a job of another site waits behind at most `per_site` jobs of each busy site.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import FileRefused
from orchestrator.files import confined
from orchestrator_contract.codes import ErrorCode

T = TypeVar("T")


@dataclass(frozen=True)
class SiteRef:
    """A site whose files a request may touch: its id, directory name and uid (= gid)."""

    id: int
    name: str
    uid: int


class Threads:
    """Threads taking jobs from one queue, each handing its result straight back to the event
    loop: one wake-up of the loop per job, where `run_in_executor` goes through a concurrent
    future, its callbacks and a second future (a fifth of a small read's time in the orchestrator)."""

    def __init__(self, count: int, name: str, initializer: Callable[[], None]) -> None:
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, args=(initializer,), name=f"{name}-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError("the file threads are closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, done, job))
        return done

    def close(self) -> None:
        """No new jobs; each thread ends after the job it runs (queued ones are dropped)."""
        self._closed = True
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._jobs.get_nowait()
                if item is not None:
                    item[0].call_soon_threadsafe(item[1].cancel)
        for _ in self._threads:
            self._jobs.put(None)

    def _serve(self, initializer: Callable[[], None]) -> None:
        initializer()
        while (item := self._jobs.get()) is not None:
            loop, done, job = item
            try:
                result, error = job(), None
            except BaseException as exc:  # handed to the awaiting coroutine, whatever it is
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, done, result, error)


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


class Worker:
    def __init__(self, root: Path, workers: int, per_site: int | None = None) -> None:
        self.root = root
        self._pool = Threads(workers, "files", confined.drop_supplementary_groups)
        self._per_site = max(1, per_site if per_site is not None else workers)
        self._turns: dict[int, tuple[asyncio.Semaphore, int]] = {}  # site -> its threads, jobs holding or waiting

    async def as_site(self, site: SiteRef, job: Callable[[], T]) -> T:
        """`job()` in a file thread acting as the site's user."""
        async with self._turn(site.id):
            return await self._pool.run(lambda: self._as_site(site, job))

    async def in_site(self, site: SiteRef, job: Callable[[int], T]) -> T:
        """`job(site_fd)` in a file thread acting as the site's user, given its directory (opened
        as root first: the sites root need not be open to the sites' users)."""
        async with self._turn(site.id):
            return await self._pool.run(lambda: self._in_site(site, job))

    @contextlib.asynccontextmanager
    async def _turn(self, site_id: int) -> AsyncIterator[None]:
        """One of the site's `per_site` threads (bounded: an entry per site with jobs)."""
        gate, users = self._turns.get(site_id) or (asyncio.Semaphore(self._per_site), 0)
        self._turns[site_id] = (gate, users + 1)
        try:
            async with gate:
                yield
        finally:
            gate, users = self._turns[site_id]
            if users == 1:
                del self._turns[site_id]
            else:
                self._turns[site_id] = (gate, users - 1)

    def close(self) -> None:
        self._pool.close()

    @staticmethod
    def _as_site(site: SiteRef, job: Callable[[], T]) -> T:
        with confined.acting_as(site.uid, site.uid):
            return job()

    def _in_site(self, site: SiteRef, job: Callable[[int], T]) -> T:
        fd = self.open_site(site)
        try:
            with confined.acting_as(site.uid, site.uid):
                return job(fd)
        finally:
            os.close(fd)

    def open_site(self, site: SiteRef) -> int:
        """The site directory under the sites root, never through a link; `site_not_found` when
        it is gone (deleted: moved to the trash)."""
        try:
            root = os.open(self.root, confined.DIR_FLAGS)
        except OSError as exc:
            raise FileRefused(f"the sites root is not available: {exc.strerror}", code=ErrorCode.IO_ERROR) from None
        try:
            return confined.child_dir(root, site.name)
        except FileNotFoundError:
            raise FileRefused(f"site {site.id} has no directory", code=ErrorCode.SITE_NOT_FOUND) from None
        except OSError as exc:
            raise FileRefused(
                f"site {site.id}'s directory is not a real directory ({exc.strerror})", code=ErrorCode.UNSAFE_PATH
            ) from None
        finally:
            os.close(root)
