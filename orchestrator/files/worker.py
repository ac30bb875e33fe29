"""The threads that touch site files: a bounded pool, each job acting as its site's user.

The event loop never does file I/O; a job runs in one of `workers` threads with the thread's
filesystem uid/gid set to the site's for its duration (`confined.acting_as`), with the site
directory opened (as root, from the sites root, without following links) when it needs it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from orchestrator.errors import ErrorCode, FileRefused
from orchestrator.files import confined

T = TypeVar("T")


@dataclass(frozen=True)
class SiteRef:
    """A site whose files a request may touch: its id, directory name and uid (= gid)."""

    id: int
    name: str
    uid: int


class Worker:
    def __init__(self, root: Path, workers: int) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="files", initializer=confined.drop_supplementary_groups
        )

    async def as_site(self, site: SiteRef, job: Callable[[], T]) -> T:
        """`job()` in a file thread acting as the site's user."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._as_site, site, job)

    async def in_site(self, site: SiteRef, job: Callable[[int], T]) -> T:
        """`job(site_fd)` in a file thread acting as the site's user, given its directory (opened
        as root first: the sites root need not be open to the sites' users)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._in_site, site, job)

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
