"""A page of a site directory's entries, sorted by name (`files.list`), and the bounded cache of
sorted names that lets paging through a big directory scan it once."""

from __future__ import annotations

import bisect
import contextlib
import heapq
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Container, Iterator

from orchestrator.errors import FileRefused
from orchestrator.files import confined, paths
from orchestrator.files.bounds import ReplySpace
from orchestrator.files.operations import describe
from orchestrator.files.paths import Parts
from orchestrator.files.walks import CLOCK_EVERY, Budget, closing
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import Entry, ListResult

DirKey = tuple[int, int, int, int, int]  # site's directory fd's device, inode, ctime, mtime; the site


class SortedNames:
    """The sorted names of directories listed lately, so that paging through a big directory
    scans it for its first page and bisects for the others (100 pages of 100,000 entries were 100
    scans). Bounded: at most `max_names` names in all (least recently used first out), and a
    directory only while it has more than a page and at most `max_names` entries.

    Keyed by the directory's device, inode, ctime and mtime: any change to its entries moves both
    times, and a site cannot forge ctime (setting mtime sets ctime to now), so neither a reused
    inode nor a planted mtime gets another directory's names. The kernel's file-time clock is
    coarse, so a directory changed within `settle_seconds` is not kept: a change in the same tick
    would leave the key as it was."""

    def __init__(self, max_names: int = 120_000, settle_seconds: float = 1.0) -> None:
        self.max_names = max_names
        self.settle_seconds = settle_seconds
        self._lists: OrderedDict[DirKey, list[str]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()  # the file worker threads share it

    def key(self, fd: int, site: int) -> DirKey | None:
        """The directory's key, or None while it changed too lately to be kept."""
        st = os.fstat(fd)
        if time.time() - max(st.st_ctime, st.st_mtime) < self.settle_seconds:
            return None
        return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mtime_ns, site)

    def get(self, key: DirKey) -> list[str] | None:
        with self._lock:
            names = self._lists.get(key)
            if names is not None:
                self._lists.move_to_end(key)
            return names

    def put(self, key: DirKey, names: list[str]) -> None:
        if len(names) > self.max_names:
            return
        with self._lock:
            if key in self._lists:
                return
            self._lists[key] = names
            self._held += len(names)
            while self._held > self.max_names:
                _, dropped = self._lists.popitem(last=False)
                self._held -= len(dropped)


def list_dir(
    site_fd: int,
    parts: Parts,
    after: str | None,
    limit: int,
    budget: Budget,
    live_uploads: Container[object] = (),
    stale_seconds: float | None = None,
    sorted_names: tuple[SortedNames, int] | None = None,
    reply_bytes: int = 1024 * 1024,
) -> ListResult:
    """A page of the directory's entries sorted by name, after `after`: at most `limit` entries,
    and fewer when more would make the reply larger than `reply_bytes`. With `sorted_names` (the
    cache and the site's id) the first page's scan keeps every name (up to the cache's bound: a few
    MB) and the next pages bisect; without it, or past the bound, each page scans the directory
    keeping only the `limit` smallest names past the cursor (memory: one page).
    Temporary files of uploads that no longer run, older than `stale_seconds`, are removed on the
    way (what a crashed process left)."""
    with closing(confined.open_dir(site_fd, parts)) as fd:
        names = None
        if sorted_names is not None:
            names = _cached_page(fd, after, limit, budget, live_uploads, stale_seconds, *sorted_names)
        if names is None:
            names = heapq.nsmallest(limit + 1, _names(fd, after, budget, live_uploads, stale_seconds))
        entries: list[Entry] = []
        space = ReplySpace(reply_bytes)
        covered = 0  # names this page answers for, listed or not
        for name in names[:limit]:
            if paths.listable(name):  # not UTF-8: no request could name it either
                try:
                    found = describe(fd, name, (*parts, name))
                except FileRefused as exc:
                    if exc.code is not ErrorCode.NOT_FOUND:  # removed since the scan: not listed
                        raise
                else:
                    # The first entry always goes (one entry is a few KB at most): every page moves on.
                    if not space.take(found) and entries:
                        break
                    entries.append(found)
            covered += 1
        more = covered < len(names)
        return ListResult(entries=entries, next_cursor=paths.encode_cursor(names[covered - 1]) if more else None)


def _cached_page(
    fd: int,
    after: str | None,
    limit: int,
    budget: Budget,
    live_uploads: Container[object],
    stale_seconds: float | None,
    cache: SortedNames,
    site: int,
) -> list[str] | None:
    """The page's names (and the next one's first) from the cache, filling it on a miss; None
    when the directory is not one to keep (changing, one page, or too big: a plain scan then)."""
    key = cache.key(fd, site)
    if key is None:
        return None
    names = cache.get(key)
    if names is None:
        everything = []
        for name in _names(fd, None, budget, live_uploads, stale_seconds):
            everything.append(name)
            if len(everything) > cache.max_names:
                return None  # too big to hold: a scan per page keeps one page
        everything.sort()
        # Kept when there is a next page, and when the scan did not change the directory itself
        # (a stale temporary removed: the names are right, the key is not).
        if len(everything) > limit and cache.key(fd, site) == key:
            cache.put(key, everything)
        names = everything
    start = bisect.bisect_right(names, after) if after is not None else 0
    return names[start : start + limit + 1]


def _names(
    fd: int, after: str | None, budget: Budget, live_uploads: Container[object], stale_seconds: float | None
) -> Iterator[str]:
    """The names past `after` (the hot loop of a listing: a page of a 100,000-entry directory
    looks at every name once)."""
    prefix, floor = paths.TEMP_PREFIX, after or ""  # "": below every name
    with os.scandir(fd) as scan:
        for count, item in enumerate(scan, 1):
            if not count % CLOCK_EVERY:
                budget.tick(CLOCK_EVERY)
            name = item.name
            if name <= floor:
                continue
            if name.startswith(prefix):
                if stale_seconds is not None:
                    _remove_stale(fd, name, live_uploads, stale_seconds)
                continue
            yield name


def _remove_stale(fd: int, name: str, live_uploads: Container[object], stale_seconds: float) -> None:
    upload = paths.upload_of(name)
    if upload is None or upload in live_uploads:
        return
    with contextlib.suppress(OSError):
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > stale_seconds:
            os.unlink(name, dir_fd=fd)
