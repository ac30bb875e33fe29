"""Uploads: `files.write` chunks appended in order to a hidden temporary file beside the target,
synced and renamed into place by the final chunk, so a reader never sees half a file.

The temporary file is made in the target's directory (opened without following links and held
open for the whole upload, with the file itself), as the site's user. The final rename replaces
the target's directory entry, never writes into the target: a file with other hard links (say,
one a site linked from elsewhere) is replaced, not written through. The number of uploads is
bounded in all and per site; an upload idle for `FILES_UPLOAD_IDLE_SECONDS` is removed with its
temporary file.

Chunks of one upload may arrive out of order (large bodies are parsed in threads) or twice (a
redelivery): a chunk waits briefly for the one before it, and a repeat of the last chunk (or of
the final one, after the upload completed) is answered again without writing anything.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import os
import stat
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from orchestrator.errors import FileRefused
from orchestrator.files import confined, paths
from orchestrator.files.operations import DEFAULT_FILE_MODE
from orchestrator.files.paths import Parts
from orchestrator.files.worker import SiteRef, Worker
from orchestrator.logging_setup import fields
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import Entry, FilesWrite, WriteResult

log = logging.getLogger("orchestrator.files")
# How long a chunk waits for the chunks before it (delivered at once, parsed in parallel), and for
# the first chunk of an upload not seen yet (usually: an expired or unknown upload).
ORDER_WAIT_SECONDS = 10.0
UNKNOWN_WAIT_SECONDS = 3.0
# Final replies remembered for a redelivered final chunk, and why recent uploads ended (a chunk of
# one is refused at once, not after waiting for its first chunk).
COMPLETED_KEPT = 256
ENDED_KEPT = 1024


@dataclass
class Upload:
    id: uuid.UUID
    site: SiteRef
    parts: Parts
    if_match: str | None
    if_none_match: bool
    mode: int | None
    parent: int = -1  # the target's directory
    fd: int = -1  # the temporary file
    temp: str = ""
    received: int = 0
    last: tuple[int, int] = (-1, -1)  # offset and length of the last chunk written
    writing: bool = True  # a chunk (or the start) is being written: others wait
    touched: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> Key:
        return (self.site.id, self.id)


Key = tuple[int, uuid.UUID]  # the site's id, the upload's


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_uploads: int
    max_per_site: int
    idle_seconds: float


class Uploads:
    def __init__(self, worker: Worker, limits: Limits) -> None:
        self._worker = worker
        self._limits = limits
        # Keyed by site and upload id: a chunk naming another site's upload finds nothing of it.
        self._uploads: dict[Key, Upload] = {}
        self._completed: OrderedDict[Key, tuple[Parts, int, WriteResult]] = OrderedDict()
        self._ended: OrderedDict[Key, str] = OrderedDict()
        self._changed = asyncio.Condition()
        self._sweeper: asyncio.Task[None] | None = None

    def live(self) -> frozenset[uuid.UUID]:
        return frozenset(upload.id for upload in self._uploads.values())

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for upload in list(self._uploads.values()):
            await self._discard(upload, "the orchestrator stopped")

    async def write(self, site: SiteRef, request: FilesWrite, parts: Parts) -> WriteResult:
        """Carry out one chunk; its base64 is decoded in the file thread that writes it."""
        size = decoded_size(request.data)
        done = self._completed.get((site.id, request.upload_id))
        if done is not None and request.final and (parts, request.offset) == done[:2]:
            return done[2]  # a redelivered final chunk: the file is in place already
        upload = await self._turn(site, request, parts)
        if upload.site != site or upload.parts != parts:
            await self._release(upload)
            raise _unknown(f"upload {request.upload_id} is for another site or path")
        if request.offset < upload.received:
            await self._release(upload)
            if (request.offset, size) == upload.last and request.offset + size == upload.received:
                return WriteResult(received=upload.received)  # the last chunk again (a redelivery)
            raise _unknown(f"upload {request.upload_id} has {upload.received} bytes; a chunk at {request.offset}")
        if upload.received + size > self._limits.max_file_bytes:
            await self._discard(upload, "too large")
            raise FileRefused(
                f"the upload is larger than {self._limits.max_file_bytes} bytes (FILES_MAX_FILE_BYTES)",
                code=ErrorCode.TOO_LARGE,
            )
        try:
            if size:
                await self._worker.as_site(site, lambda: _append(upload.fd, request.data, paths.join(parts)))
            upload.received += size
            upload.last = (request.offset, size)
            if not request.final:
                await self._release(upload)
                return WriteResult(received=upload.received)
            entry, etag = await self._worker.as_site(site, lambda: _commit(upload))
        except BaseException as exc:
            await self._discard(upload, f"a chunk failed: {exc!r}"[:300])
            raise
        self._uploads.pop(upload.key, None)
        result = WriteResult(received=upload.received, entry=entry, etag=etag)
        self._completed[upload.key] = (parts, request.offset, result)
        while len(self._completed) > COMPLETED_KEPT:
            self._completed.popitem(last=False)
        await self._notify()
        return result

    async def _turn(self, site: SiteRef, request: FilesWrite, parts: Parts) -> Upload:
        """The upload, held for this chunk once every chunk before it was written; a new upload
        for a chunk at offset 0 of an unknown id."""
        upload_id, offset = request.upload_id, request.offset
        key = (site.id, upload_id)
        if key in self._ended and key not in self._uploads:
            raise _unknown(f"upload {upload_id} ended: {self._ended[key]}")

        def ready() -> bool:
            upload = self._uploads.get(key)
            return (offset == 0 if upload is None else not upload.writing and upload.received >= offset) or (
                key in self._completed
            )

        if not ready():
            wait = ORDER_WAIT_SECONDS if key in self._uploads else UNKNOWN_WAIT_SECONDS
            try:
                async with self._changed:
                    async with asyncio.timeout(wait):
                        await self._changed.wait_for(ready)
            except TimeoutError:
                upload = self._uploads.get(key)
                have = f"has {upload.received} bytes" if upload else "is unknown (expired, aborted or never started)"
                raise _unknown(f"upload {upload_id} {have}; a chunk at {offset}") from None
        upload = self._uploads.get(key)
        if upload is None:
            if key in self._completed:
                raise _unknown(f"upload {upload_id} is complete already")
            return await self._begin(site, request, parts)
        upload.writing = True
        upload.touched = time.monotonic()
        return upload

    async def _begin(self, site: SiteRef, request: FilesWrite, parts: Parts) -> Upload:
        if len(self._uploads) >= self._limits.max_uploads:
            raise FileRefused(f"{len(self._uploads)} uploads are under way (FILES_MAX_UPLOADS)", code=ErrorCode.BUSY)
        if sum(1 for u in self._uploads.values() if u.site.id == site.id) >= self._limits.max_per_site:
            raise FileRefused(
                f"site {site.id} has {self._limits.max_per_site} uploads under way (FILES_MAX_UPLOADS_PER_SITE)",
                code=ErrorCode.BUSY,
            )
        upload = Upload(request.upload_id, site, parts, request.if_match, request.if_none_match, request.mode)
        self._uploads[upload.key] = upload  # writing: its next chunks wait
        try:
            await self._worker.in_site(site, lambda site_fd: _begin(site_fd, upload))
        except BaseException:
            self._uploads.pop(upload.key, None)
            await self._notify()
            raise
        return upload

    async def _release(self, upload: Upload) -> None:
        upload.writing = False
        upload.touched = time.monotonic()
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _discard(self, upload: Upload, reason: str) -> None:
        log.info("upload discarded", extra=fields(upload_id=str(upload.id), site_id=upload.site.id, reason=reason))
        self._uploads.pop(upload.key, None)
        self._ended[upload.key] = reason
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)
        if upload.fd >= 0:
            try:
                await self._worker.as_site(upload.site, lambda: _discard(upload))
            except Exception as exc:  # the site's directory may be gone: the file went with it
                log.warning("could not remove an upload's temporary file", extra=fields(error=repr(exc)))
        await self._notify()

    async def abort_site(self, site_id: int) -> int:
        """Abort every upload of the site (it is being deleted)."""
        doomed = [u for u in self._uploads.values() if u.site.id == site_id]
        for upload in doomed:
            await self._discard(upload, "the site was deleted")
        return len(doomed)

    async def _sweep(self) -> None:
        interval = min(5.0, self._limits.idle_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for upload in list(self._uploads.values()):
                if not upload.writing and now - upload.touched > self._limits.idle_seconds:
                    await self._discard(upload, f"idle for {self._limits.idle_seconds:g} s")


# --- in a file thread, as the site's user ---------------------------------------------------------


def _begin(site_fd: int, upload: Upload) -> None:
    """Check the target against the upload's conditions, then open the temporary file beside it."""
    if paths.is_skeleton(upload.parts):
        shown = paths.join(upload.parts) or "the site directory"
        raise FileRefused(f"{shown} is a directory", code=ErrorCode.IS_A_DIRECTORY)
    parent, name = confined.open_parent(site_fd, upload.parts)
    try:
        current = _check_target(parent, name, upload)
        if upload.mode is None:
            upload.mode = stat.S_IMODE(current.st_mode) & 0o777 if current is not None else DEFAULT_FILE_MODE
        upload.temp = paths.temp_name(upload.id)
        try:
            upload.fd = os.open(
                upload.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent
            )
        except OSError as exc:
            raise confined.failure(exc, paths.join(upload.parts)) from None
        upload.parent = parent
    except BaseException:
        os.close(parent)
        raise


def _check_target(parent: int, name: str, upload: Upload) -> os.stat_result | None:
    """The target as it is (None: missing), if the upload may replace it."""
    shown = paths.join(upload.parts)
    try:
        current = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        if upload.if_match is not None:
            raise FileRefused(f"{shown} does not exist (if_match)", code=ErrorCode.PRECONDITION_FAILED) from None
        return None
    except OSError as exc:
        raise confined.failure(exc, shown) from None
    if stat.S_ISDIR(current.st_mode):
        raise FileRefused(f"{shown} is a directory", code=ErrorCode.IS_A_DIRECTORY)
    if not (stat.S_ISREG(current.st_mode) or stat.S_ISLNK(current.st_mode)):
        raise FileRefused(f"{shown} is a FIFO, socket or device", code=ErrorCode.NOT_REGULAR)
    if upload.if_none_match:
        raise FileRefused(f"{shown} exists (if_none_match)", code=ErrorCode.PRECONDITION_FAILED)
    if upload.if_match is not None and (not stat.S_ISREG(current.st_mode) or paths.etag(current) != upload.if_match):
        raise FileRefused(f"{shown} changed: its etag is not if_match", code=ErrorCode.PRECONDITION_FAILED)
    return current


def decoded_size(encoded: str) -> int:
    """The bytes a base64 text holds (what it claims: a malformed one fails its decoding)."""
    return len(encoded) // 4 * 3 - encoded.count("=", max(0, len(encoded) - 2))


def _append(fd: int, encoded: str, shown: str) -> None:
    try:
        data = binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        raise FileRefused("data is not standard base64", code=ErrorCode.INVALID_REQUEST) from None
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:  # EDQUOT past the site's disk limit, ENOSPC: the upload is discarded
        raise confined.failure(exc, shown) from None


def _commit(upload: Upload) -> tuple[Entry, str]:
    """Sync the temporary file, give it its mode, check the conditions again and rename it over
    the target (without replacing anything, for if_none_match); then sync the directory."""
    shown = paths.join(upload.parts)
    name = upload.parts[-1]
    try:
        os.fsync(upload.fd)  # a filesystem may find out only now that the data does not fit
    except OSError as exc:
        raise confined.failure(exc, shown) from None
    os.fchmod(upload.fd, upload.mode if upload.mode is not None else DEFAULT_FILE_MODE)
    _check_target(upload.parent, name, upload)
    try:
        if upload.if_none_match:
            confined.rename_noreplace(upload.parent, upload.temp, upload.parent, name)
        else:
            os.rename(upload.temp, name, src_dir_fd=upload.parent, dst_dir_fd=upload.parent)
    except FileExistsError:
        raise FileRefused(f"{shown} exists (if_none_match)", code=ErrorCode.PRECONDITION_FAILED) from None
    except OSError as exc:
        raise confined.failure(exc, shown) from None
    upload.temp = ""  # renamed: nothing to remove
    os.fsync(upload.parent)
    st = os.fstat(upload.fd)
    placed = os.stat(name, dir_fd=upload.parent, follow_symlinks=False)
    _close(upload)
    if (placed.st_dev, placed.st_ino) != (st.st_dev, st.st_ino):
        raise FileRefused(f"{shown} was changed by the site while it was uploaded", code=ErrorCode.IO_ERROR)
    return paths.entry(upload.parts, st), paths.etag(st)


def _discard(upload: Upload) -> None:
    if upload.temp and upload.parent >= 0:
        with contextlib.suppress(OSError):
            os.unlink(upload.temp, dir_fd=upload.parent)
    _close(upload)


def _close(upload: Upload) -> None:
    for fd in (upload.fd, upload.parent):
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    upload.fd = upload.parent = -1


def _unknown(message: str) -> FileRefused:
    return FileRefused(message, code=ErrorCode.UPLOAD_UNKNOWN)
