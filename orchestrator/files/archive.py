"""A zip of a site directory, produced a chunk at a time: memory holds one chunk, whatever the
size of the tree.

`ZipStream.next_chunk` runs in a file thread acting as the site's user; between calls nothing is
held but descriptors and one partial chunk, so the thread is free while the chunk travels. The
tree is walked from the directory's descriptor without following links: a link is stored as a
link (its text), a FIFO, socket or device is left out (never opened), upload temporaries too.
The walk stops with `too_large` past the entry budget, the time budget (time spent producing,
not waiting for the requester; looked at after every piece read) or FILES_MAX_ARCHIVE_BYTES, which
bounds the bytes read as well as the zip's: a file counts by its size before a byte of it is read,
so a sparse file (a terabyte of holes that compress 229:1) is refused at once instead of costing
minutes of CPU. Names are stored as a Windows extractor will not take them for paths (no `\\`,
no `:`), link texts as their raw bytes.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
import time
import zipfile
from collections.abc import Generator
from typing import Any

from orchestrator.errors import FileRefused
from orchestrator.files import confined, paths
from orchestrator.files.paths import Parts
from orchestrator.files.walks import Budget, closing
from orchestrator_contract.codes import ErrorCode

PIECE = 256 * 1024
# Larger files get zip64 headers from the start (their size is only known as they are read).
ZIP64_FROM = 2**31
EPOCH_1980 = 315532800  # the earliest time a zip entry can hold


class _Sink(io.RawIOBase):
    """Where zipfile writes: a growing buffer, not seekable (zipfile then writes data
    descriptors after each file instead of seeking back)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(data)
        self.data += data
        self.total += size
        return size

    def take(self, size: int) -> bytes:
        chunk = bytes(self.data[:size])
        del self.data[:size]
        return chunk


class ZipStream:
    def __init__(self, site_fd: int, parts: Parts, chunk_bytes: int, max_bytes: int, budget: Budget) -> None:
        self._chunk_bytes = chunk_bytes
        self._max_bytes = max_bytes
        self._budget = budget
        self._dir = confined.open_dir(site_fd, parts)
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        self._read = 0  # bytes of files taken in so far
        self._steps = self._walk(self._dir, "", 0)
        self._finished = False
        self._closed = False
        self._ending = False
        self._lock = threading.Lock()
        self._paused_at: float | None = None

    def next_chunk(self) -> bytes | None:
        """The next piece of the zip (at most `chunk_bytes`); None after the last."""
        with self._lock:
            return self._next_chunk()

    def _next_chunk(self) -> bytes | None:
        if self._closed:
            raise FileRefused("the archive was ended", code=ErrorCode.IO_ERROR)
        if self._paused_at is not None:  # time spent waiting for the requester is not the walk's
            self._budget.started += time.monotonic() - self._paused_at
        try:
            while len(self._sink.data) < self._chunk_bytes and not self._finished:
                if self._ending:  # `close` waits for this thread: it stops at the next piece
                    raise FileRefused("the archive was ended", code=ErrorCode.IO_ERROR)
                try:
                    next(self._steps)
                except StopIteration:
                    self._zip.close()
                    self._finished = True
                if self._sink.total > self._max_bytes:
                    raise self._too_large()
            if not self._sink.data:
                return None
            return self._sink.take(self._chunk_bytes)
        finally:
            self._paused_at = time.monotonic()

    def _too_large(self) -> FileRefused:
        return FileRefused(
            f"the archive is larger than {self._max_bytes} bytes (FILES_MAX_ARCHIVE_BYTES; files count by their "
            "size, sparse ones too)",
            code=ErrorCode.TOO_LARGE,
        )

    def close(self) -> None:
        """From any thread, even while `next_chunk` runs in another (a stream cancelled while its
        piece was being made): that one stops at its next piece, then this closes. Idempotent:
        the descriptor is closed once (a second close could hit a reused number)."""
        self._ending = True
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._steps.close()
        self._zip.fp = None  # finished, or abandoned: nothing more is written (not even at GC)
        self._sink.data.clear()
        with contextlib.suppress(OSError):
            os.close(self._dir)

    def _walk(self, fd: int, prefix: str, depth: int) -> Generator[None, None, None]:
        self._budget.descend(depth)
        with os.scandir(fd) as scan:
            for item in scan:
                self._budget.tick()
                name = item.name
                if not paths.listable(name):
                    continue
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                inside = prefix + stored_name(name)
                if stat.S_ISDIR(st.st_mode):
                    try:
                        child = confined.child_dir(fd, name)
                    except OSError:
                        continue  # swapped for something else meanwhile
                    with closing(child):
                        self._zip.writestr(_info(inside + "/", st, stat.S_IFDIR), b"")
                        yield
                        yield from self._walk(child, inside + "/", depth + 1)
                elif stat.S_ISLNK(st.st_mode):
                    with contextlib.suppress(OSError):
                        info = _info(inside, st, stat.S_IFLNK)
                        info.compress_type = zipfile.ZIP_STORED
                        self._zip.writestr(info, os.readlink(os.fsencode(name), dir_fd=fd))
                        yield
                elif stat.S_ISREG(st.st_mode):
                    yield from self._file(fd, name, inside)

    def _file(self, dir_fd: int, name: str, inside: str) -> Generator[None, None, None]:
        try:
            fd, st = confined.open_regular(dir_fd, name, inside)
        except FileRefused as exc:
            if exc.code in (ErrorCode.NOT_REGULAR, ErrorCode.NOT_FOUND, ErrorCode.IS_A_DIRECTORY):
                return  # swapped or removed meanwhile: left out
            raise
        with closing(fd):
            left = st.st_size  # a file growing meanwhile is cut at the size it had
            self._read += left
            if self._read > self._max_bytes:
                raise self._too_large()
            with self._zip.open(_info(inside, st, stat.S_IFREG), "w", force_zip64=st.st_size >= ZIP64_FROM) as out:
                while left > 0:
                    piece = os.read(fd, min(PIECE, left))
                    if not piece:
                        break
                    out.write(piece)
                    left -= len(piece)
                    self._budget.check_clock()
                    yield
        yield


def stored_name(name: str) -> str:
    """A name as the zip stores it: `\\` and `:` (a path separator and a drive or stream on
    Windows, where staff may extract it) as `_`."""
    return name.replace("\\", "_").replace(":", "_")


def _info(name: str, st: os.stat_result, kind: int) -> zipfile.ZipInfo:
    when = time.gmtime(max(st.st_mtime, EPOCH_1980))
    info = zipfile.ZipInfo(name, date_time=when[:6])
    info.create_system = 3  # unix: external_attr holds the mode
    info.external_attr = (kind | (st.st_mode & 0o777)) << 16
    if kind == stat.S_IFDIR:
        info.external_attr |= 0x10  # MS-DOS directory flag
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
