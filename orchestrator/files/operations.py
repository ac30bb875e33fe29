"""The file operations on one site directory, synchronous: each runs in a file worker thread
acting as the site's user (`files.service`), given the descriptor of the site directory.

Every path is resolved by `files.confined` from that descriptor; nothing here walks a path
string. A recursive delete counts against a `walks.Budget` like every whole-tree walk; listing a
directory is `files.listing`'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass

from orchestrator.errors import FileRefused
from orchestrator.files import confined, paths
from orchestrator.files.paths import Parts
from orchestrator.files.walks import Budget, closing
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import DeleteResult, Entry, EntryResult, StatResult

DEFAULT_FILE_MODE = 0o660
DEFAULT_DIR_MODE = 0o770


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


# --- stat, read -------------------------------------------------------------------------------


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
