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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

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


class Worker:
    def __init__(self, root: Path, workers: int, per_site: int | None = None) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="files", initializer=confined.drop_supplementary_groups
        )
        self._per_site = max(1, per_site if per_site is not None else workers)
        self._turns: dict[int, tuple[asyncio.Semaphore, int]] = {}  # site -> its threads, jobs holding or waiting

    async def as_site(self, site: SiteRef, job: Callable[[], T]) -> T:
        """`job()` in a file thread acting as the site's user."""
        async with self._turn(site.id):
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._as_site, site, job)

    async def in_site(self, site: SiteRef, job: Callable[[int], T]) -> T:
        """`job(site_fd)` in a file thread acting as the site's user, given its directory (opened
        as root first: the sites root need not be open to the sites' users)."""
        async with self._turn(site.id):
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._in_site, site, job)

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
        self._pool.shutdown(wait=False, cancel_futures=True)

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
