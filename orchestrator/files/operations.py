"""The file operations on one site directory, synchronous: each runs in a file worker thread
acting as the site's user (`files.service`), given the descriptor of the site directory.

Every path is resolved by `files.confined` from that descriptor; nothing here walks a path
string. Whole-tree walks (usage, recursive delete, archive) and directory scans (a listing page)
count against a `Budget` and stop with `too_large` rather than run on.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import heapq
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field

from orchestrator.errors import FileRefused
from orchestrator.files import confined, paths
from orchestrator.files.bounds import ReplySpace
from orchestrator.files.paths import Parts
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import DeleteResult, Entry, EntryResult, ListResult, StatResult, UsageResult

DEFAULT_FILE_MODE = 0o660
DEFAULT_DIR_MODE = 0o770
# Directory levels a walk descends (each holds a descriptor open).
MAX_DEPTH = 128
# Look at the clock once per this many entries.
CLOCK_EVERY = 512


@dataclass
class Budget:
    """How long a walk or scan may take and how many entries it may see."""

    seconds: float
    entries: int
    what: str = "the walk"
    seen: int = 0
    started: float = field(default_factory=time.monotonic)

    def tick(self, count: int = 1) -> None:
        self.seen += count
        if self.seen > self.entries:
            raise FileRefused(
                f"{self.what} stopped: more than {self.entries} entries (FILES_WALK_MAX_ENTRIES)",
                code=ErrorCode.TOO_LARGE,
            )
        if self.seen % CLOCK_EVERY < count:
            self.check_clock()

    def check_clock(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise FileRefused(
                f"{self.what} stopped after {self.seconds:g} s (FILES_WALK_MAX_SECONDS), {self.seen} entries in",
                code=ErrorCode.TOO_LARGE,
            )

    def descend(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise FileRefused(f"{self.what} stopped: deeper than {MAX_DEPTH} levels", code=ErrorCode.TOO_LARGE)


@contextlib.contextmanager
def closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _shown(parts: Parts) -> str:
    return paths.join(parts) or "the site directory"


def describe(dir_fd: int, name: str, parts: Parts, st: os.stat_result | None = None) -> Entry:
    """The entry `name` under `dir_fd` as lstat sees it (a link with its text, never followed)."""
    st = st or confined.lstat(dir_fd, name, _shown(parts))
    target = None
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(OSError):
            target = os.readlink(name, dir_fd=dir_fd)
    return paths.entry(parts, st, target)


def _describe_fd(fd: int, parts: Parts) -> Entry:
    return paths.entry(parts, os.fstat(fd))


# --- list, stat --------------------------------------------------------------------------------


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


def stat_path(site_fd: int, parts: Parts) -> StatResult:
    if not parts:
        st = os.fstat(site_fd)
        return StatResult(entry=paths.entry(parts, st))
    parent, name = confined.open_parent(site_fd, parts)
    with closing(parent):
        st = confined.lstat(parent, name, _shown(parts))
        etag = paths.etag(st) if stat.S_ISREG(st.st_mode) else None
        return StatResult(entry=describe(parent, name, parts, st), etag=etag)


# --- read --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    data: bytes
    offset: int
    size: int
    eof: bool
    etag: str


def read_range(site_fd: int, parts: Parts, offset: int, length: int) -> Chunk:
    if not parts:
        raise FileRefused("the site directory is a directory", code=ErrorCode.IS_A_DIRECTORY)
    parent, name = confined.open_parent(site_fd, parts)
    with closing(parent):
        fd, st = confined.open_regular(parent, name, _shown(parts))
    with closing(fd):
        pieces = []
        position, wanted = offset, length
        while wanted > 0:
            piece = os.pread(fd, wanted, position)
            if not piece:
                break
            pieces.append(piece)
            position += len(piece)
            wanted -= len(piece)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        return Chunk(data, offset, st.st_size, offset + len(data) >= st.st_size, paths.etag(st))


# --- mkdir, rename, delete, chmod -----------------------------------------------------------------


def make_dir(site_fd: int, parts: Parts, parents: bool, mode: int | None) -> EntryResult:
    if not parts:
        raise FileRefused("the site directory exists already", code=ErrorCode.EXISTS)
    wanted = DEFAULT_DIR_MODE if mode is None else mode
    if not parents:
        parent, name = confined.open_parent(site_fd, parts)
        with closing(parent):
            return EntryResult(entry=_mkdir(parent, name, parts, wanted))
    fd = os.dup(site_fd)
    try:
        for index, part in enumerate(parts):
            here = parts[: index + 1]
            last = index == len(parts) - 1
            try:
                next_fd = confined.child_dir(fd, part)
            except FileNotFoundError:
                _mkdir(fd, part, here, wanted if last else DEFAULT_DIR_MODE)
                next_fd = _child(fd, part, here)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise confined.failure(exc, paths.join(here)) from None
                raise FileRefused(
                    f"{paths.join(here)} exists and is not a directory",
                    code=ErrorCode.EXISTS if last else ErrorCode.UNSAFE_PATH,
                ) from None
            os.close(fd)
            fd = next_fd
        return EntryResult(entry=_describe_fd(fd, parts))
    finally:
        os.close(fd)


def _mkdir(parent: int, name: str, parts: Parts, mode: int) -> Entry:
    """Create the directory closed to others, then give it its mode (no umask in between)."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except OSError as exc:
        raise confined.failure(exc, paths.join(parts)) from None
    with closing(_child(parent, name, parts)) as fd:
        os.fchmod(fd, mode)
        return _describe_fd(fd, parts)


def _child(parent: int, name: str, parts: Parts) -> int:
    try:
        return confined.child_dir(parent, name)
    except OSError as exc:  # replaced by a link (or removed) right after we made it
        raise confined.failure(exc, paths.join(parts)) from None


def rename(site_fd: int, source: Parts, target: Parts, overwrite: bool) -> EntryResult:
    for parts in (source, target):
        if paths.is_skeleton(parts):
            raise _skeleton(parts)
    if target[: len(source)] == source:
        raise FileRefused(
            f"{paths.join(source)} cannot be moved into itself ({paths.join(target)})", code=ErrorCode.INVALID_REQUEST
        )
    src_parent, src_name = confined.open_parent(site_fd, source)
    with closing(src_parent):
        dst_parent, dst_name = confined.open_parent(site_fd, target)
        with closing(dst_parent):
            confined.lstat(src_parent, src_name, _shown(source))
            try:
                if overwrite:
                    os.rename(src_name, dst_name, src_dir_fd=src_parent, dst_dir_fd=dst_parent)
                else:
                    confined.rename_noreplace(src_parent, src_name, dst_parent, dst_name)
            except OSError as exc:
                raise confined.failure(exc, paths.join(target)) from None
            return EntryResult(entry=describe(dst_parent, dst_name, target))


def delete(site_fd: int, parts: Parts, recursive: bool, budget: Budget) -> DeleteResult:
    if paths.is_skeleton(parts):
        raise _skeleton(parts)
    parent, name = confined.open_parent(site_fd, parts)
    with closing(parent):
        st = confined.lstat(parent, name, _shown(parts))
        try:
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=parent)
                return DeleteResult(deleted=1)
            if not recursive:
                os.rmdir(name, dir_fd=parent)
                return DeleteResult(deleted=1)
        except OSError as exc:
            raise confined.failure(exc, paths.join(parts)) from None
        return DeleteResult(deleted=_remove_tree(parent, name, parts, budget, 1))


def _remove_tree(parent: int, name: str, parts: Parts, budget: Budget, depth: int) -> int:
    """Remove the directory `name` under `parent` and everything in it, never following a link:
    a subdirectory swapped for a link on the way is removed as the link it is."""
    budget.descend(depth)
    try:
        fd = confined.child_dir(parent, name)
    except OSError:
        return _unlink_entry(parent, name, parts)  # no longer a directory: remove what stands there
    removed = 0
    with closing(fd):
        with os.scandir(fd) as scan:
            children = []
            for item in scan:
                budget.tick()
                if item.is_dir(follow_symlinks=False):
                    children.append(item.name)
                else:
                    removed += _unlink_entry(fd, item.name, (*parts, item.name))
        for child in children:
            removed += _remove_tree(fd, child, (*parts, child), budget, depth + 1)
    try:
        os.rmdir(name, dir_fd=parent)
    except NotADirectoryError:
        return removed + _unlink_entry(parent, name, parts)
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise confined.failure(exc, paths.join(parts)) from None
    return removed + 1


def _unlink_entry(fd: int, name: str, parts: Parts) -> int:
    try:
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        return 0
    except IsADirectoryError:  # a directory appeared under this name: the walk's next pass would see it
        raise FileRefused(f"{paths.join(parts)} changed while it was deleted", code=ErrorCode.IO_ERROR) from None
    except OSError as exc:
        raise confined.failure(exc, paths.join(parts)) from None
    return 1


def chmod(site_fd: int, parts: Parts, mode: int) -> EntryResult:
    """Permission bits of a file or directory (never a link's target, never a FIFO, socket or
    device); setuid, setgid and sticky bits are cleared."""
    if not parts:
        fd, st = os.dup(site_fd), os.fstat(site_fd)
    else:
        parent, name = confined.open_parent(site_fd, parts)
        with closing(parent):
            fd, st = confined.open_path(parent, name, _shown(parts))
    with closing(fd):
        if stat.S_ISLNK(st.st_mode):
            raise FileRefused(f"{_shown(parts)} is a symbolic link (never followed)", code=ErrorCode.UNSAFE_PATH)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise FileRefused(f"{_shown(parts)} is not a regular file or directory", code=ErrorCode.NOT_REGULAR)
        try:
            confined.chmod_pinned(fd, mode)
        except OSError as exc:
            raise confined.failure(exc, _shown(parts)) from None
        return EntryResult(entry=_describe_fd(fd, parts))


def _skeleton(parts: Parts) -> FileRefused:
    return FileRefused(
        f"{_shown(parts)} is part of the site's skeleton (the site directory, public, private): "
        "it cannot be deleted, renamed or replaced",
        code=ErrorCode.UNSAFE_PATH,
    )


# --- usage and walks ------------------------------------------------------------------------------

Visit = Callable[[int, str, os.stat_result, Parts], None]


def walk(fd: int, parts: Parts, budget: Budget, visit: Visit, depth: int = 0) -> None:
    """Call `visit(dir_fd, name, lstat, parts)` for every entry under the directory `fd` (upload
    temporaries left out), depth first; subdirectories are opened without following links (one
    swapped for a link meanwhile is skipped)."""
    budget.descend(depth)
    with os.scandir(fd) as scan:
        for item in scan:
            budget.tick()
            name = item.name
            if paths.is_temp(name):
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            here = (*parts, name)
            visit(fd, name, st, here)
            if stat.S_ISDIR(st.st_mode):
                try:
                    child = confined.child_dir(fd, name)
                except OSError:
                    continue
                with closing(child):
                    walk(child, here, budget, visit, depth + 1)


def usage(site_fd: int, parts: Parts, budget: Budget) -> UsageResult:
    totals = {"bytes": 0, "files": 0, "dirs": 0}
    linked: set[tuple[int, int]] = set()  # hard-linked files counted once (bounded by the budget)

    def visit(_fd: int, _name: str, st: os.stat_result, _parts: Parts) -> None:
        if stat.S_ISDIR(st.st_mode):
            totals["dirs"] += 1
            return
        if stat.S_ISREG(st.st_mode):
            totals["files"] += 1
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in linked:
                    return
                linked.add((st.st_dev, st.st_ino))
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            totals["bytes"] += st.st_size

    with closing(confined.open_dir(site_fd, parts)) as fd:
        walk(fd, parts, budget, visit)
    return UsageResult(**totals)
