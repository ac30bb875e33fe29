"""Site files and logs: one request carried out, from a typed request to the reply's body.

A request names a site; the site must have a service (a deleted one has none: its directory is
in the trash) and a directory. Requests of one site run at most `FILES_SITE_CONCURRENCY` at a
time (more: `busy`); the file work itself runs in the file threads (`files.worker`), acting as
the site's user. Deleting a site ends its streams, lets its requests in flight finish and
aborts its uploads (`close_site`, called by the site delete handler before the files move).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol, assert_never

from orchestrator.bus.outcomes import Requester
from orchestrator.bus.replies import ok_reply, read_reply
from orchestrator.config import Settings
from orchestrator.errors import FileRefused
from orchestrator.files import listing, operations, paths, walks
from orchestrator.files.archive import ZipStream
from orchestrator.files.bounds import ReplySpace
from orchestrator.files.streams import Replies, Streams, log_line
from orchestrator.files.uploads import Limits, Uploads, decoded_size
from orchestrator.files.walks import Budget
from orchestrator.files.worker import SiteRef, Worker
from orchestrator.logging_setup import fields
from orchestrator.sites.service import Service
from orchestrator.sites.spec import site_uid
from orchestrator.swarm.logs import ServiceLogs
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import (
    FileRequest,
    FilesArchive,
    FilesChmod,
    FilesDelete,
    FilesList,
    FilesMkdir,
    FilesRead,
    FilesRename,
    FilesStat,
    FilesUsage,
    FilesWrite,
    LogsFollow,
    LogsResult,
    LogsStop,
    LogsStopResult,
    LogsTail,
    WriteResult,
)
from orchestrator_contract.sites import service_name

log = logging.getLogger("orchestrator.files")
# How long a site's deletion waits for its file requests in flight.
CLOSE_WAIT_SECONDS = 30.0


class ServicesPort(Protocol):
    async def get(self, name: str) -> Service | None: ...


class SiteFiles:
    """Carries out file and log requests (see the module docstring)."""

    def __init__(
        self, settings: Settings, worker: Worker, services: ServicesPort, logs: ServiceLogs, replies: Replies
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.services = services
        self.logs = logs
        self.sorted_names = listing.SortedNames()  # paging through a big directory: one scan
        self.uploads = Uploads(
            worker,
            Limits(
                settings.files_max_file_bytes,
                settings.files_max_uploads,
                settings.files_max_uploads_per_site,
                settings.files_upload_idle_seconds,
            ),
        )
        self.streams = Streams(
            worker,
            logs,
            replies,
            max_streams=settings.files_max_streams,
            max_per_site=settings.files_max_streams_per_site,
            follow_seconds=settings.logs_follow_max_seconds,
            reply_bytes=settings.reply_budget_bytes(),
        )
        self._inflight: dict[int, int] = {}
        # Bytes of site files read (`files.read`) and written (`files.write`), for the figures.
        self.bytes_read = 0
        self.bytes_written = 0
        self._settled = asyncio.Condition()

    def start(self) -> None:
        self.uploads.start()

    async def stop(self) -> None:
        await self.streams.stop()
        await self.uploads.stop()
        self.worker.close()

    def moved(self) -> tuple[int, int]:
        """Bytes of site files read and written so far (the orchestrator's own figures)."""
        return self.bytes_read, self.bytes_written

    async def close_site(self, site_id: int) -> int:
        """The site is being deleted (its service is gone already): end its streams, wait for its
        requests in flight, abort its uploads. How many streams and uploads were ended."""
        ended = await self.streams.close_site(site_id)
        try:
            async with self._settled:
                async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                    await self._settled.wait_for(lambda: not self._inflight.get(site_id))
        except TimeoutError:
            log.warning("file requests of a deleted site still running", extra=fields(site_id=site_id))
        ended += await self.uploads.abort_site(site_id)
        return ended

    async def handle(self, request: FileRequest, requester: Requester) -> bytes | None:
        """The reply's body; None when a stream answers instead."""
        if isinstance(request, LogsStop):
            stopped = await self.streams.stop_follow(request.stream_id, request.site_id)
            return ok_reply(LogsStopResult(stream_id=request.stream_id, stopped=stopped))
        async with self._slot(request.site_id):
            site = await self._site(request.site_id)
            return await self._carry_out(site, request, requester)

    async def _carry_out(self, site: SiteRef, request: FileRequest, requester: Requester) -> bytes | None:
        settings, worker = self.settings, self.worker
        match request:
            case FilesList():
                parts, after = paths.split(request.path), paths.decode_cursor(request.cursor)
                # A scan of the whole directory: bounded in time, not in entries (100,000 are fine).
                budget = Budget(settings.files_walk_max_seconds, 2**62, "the listing")
                live, stale = self.uploads.live(), settings.files_upload_idle_seconds
                cached, most = (self.sorted_names, site.id), settings.reply_budget_bytes()
                return await worker.in_site(
                    site,
                    lambda fd: ok_reply(
                        listing.list_dir(fd, parts, after, request.limit, budget, live, stale, cached, most)
                    ),
                )
            case FilesStat():
                parts = paths.split(request.path)
                return await worker.in_site(site, lambda fd: ok_reply(operations.stat_path(fd, parts)))
            case FilesRead():
                parts = paths.split(request.path)
                length = min(settings.files_chunk_bytes, request.length or settings.files_chunk_bytes)

                def read(fd: int) -> tuple[bytes, int]:
                    chunk = operations.read_range(fd, parts, request.offset, length)
                    return read_reply(chunk), len(chunk.data)

                reply, size = await worker.in_site(site, read)
                self.bytes_read += size
                return reply
            case FilesWrite():
                written = ok_reply(await self._write(site, request))
                self.bytes_written += decoded_size(request.data)
                return written
            case FilesMkdir():
                parts = paths.split(request.path)
                return await worker.in_site(
                    site, lambda fd: ok_reply(operations.make_dir(fd, parts, request.parents, request.mode))
                )
            case FilesRename():
                source, target = paths.split(request.path), paths.split(request.to)
                return await worker.in_site(
                    site, lambda fd: ok_reply(operations.rename(fd, source, target, request.overwrite))
                )
            case FilesDelete():
                parts, budget = paths.split(request.path), self._budget("the delete")
                return await worker.in_site(
                    site, lambda fd: ok_reply(operations.delete(fd, parts, request.recursive, budget))
                )
            case FilesChmod():
                parts = paths.split(request.path)
                return await worker.in_site(site, lambda fd: ok_reply(operations.chmod(fd, parts, request.mode)))
            case FilesUsage():
                parts, budget = paths.split(request.path), self._budget("the usage walk")
                return await worker.in_site(site, lambda fd: ok_reply(walks.usage(fd, parts, budget)))
            case FilesArchive():
                parts, budget = paths.split(request.path), self._budget("the archive")
                chunk, most = settings.files_chunk_bytes, settings.files_max_archive_bytes
                await self.streams.archive(site, lambda fd: ZipStream(fd, parts, chunk, most, budget), requester)
                return None
            case LogsTail():
                records = await self.logs.tail(site.name, request.lines)
                if records is None:
                    raise _site_not_found(site.id)
                # The newest lines that fit one reply (a site's lines can be 16 KiB of control characters).
                space, lines = ReplySpace(settings.reply_budget_bytes()), []
                for record in reversed(records):
                    line = log_line(record)
                    if not space.take(line):
                        break
                    lines.append(line)
                lines.reverse()
                return ok_reply(LogsResult(lines=lines, omitted=len(records) - len(lines)))
            case LogsFollow():
                await self.streams.follow(site, site.name, request.stream_id, request.lines, requester)
                return None
            case LogsStop():
                raise AssertionError("answered before a site is looked up")
            case _:
                assert_never(request)

    async def _write(self, site: SiteRef, request: FilesWrite) -> WriteResult:
        parts = paths.split(request.path)
        if not parts:
            raise FileRefused("the site directory is a directory", code=ErrorCode.IS_A_DIRECTORY)
        if decoded_size(request.data) > self.settings.files_chunk_bytes:
            raise FileRefused(
                f"a chunk carries at most {self.settings.files_chunk_bytes} bytes (FILES_CHUNK_BYTES)",
                code=ErrorCode.TOO_LARGE,
            )
        return await self.uploads.write(site, request, parts)

    def _budget(self, what: str) -> Budget:
        return Budget(self.settings.files_walk_max_seconds, self.settings.files_walk_max_entries, what)

    async def _site(self, site_id: int) -> SiteRef:
        name = service_name(site_id)
        if await self.services.get(name) is None:
            raise _site_not_found(site_id)
        return SiteRef(site_id, name, site_uid(site_id, self.settings.site_uid_base))

    @contextlib.asynccontextmanager
    async def _slot(self, site_id: int) -> AsyncIterator[None]:
        if self._inflight.get(site_id, 0) >= self.settings.files_site_concurrency:
            raise FileRefused(
                f"site {site_id} has {self.settings.files_site_concurrency} file requests in flight "
                "(FILES_SITE_CONCURRENCY); try again",
                code=ErrorCode.BUSY,
            )
        self._inflight[site_id] = self._inflight.get(site_id, 0) + 1
        try:
            yield
        finally:
            left = self._inflight[site_id] - 1
            if left:
                self._inflight[site_id] = left
            else:
                del self._inflight[site_id]
                async with self._settled:
                    self._settled.notify_all()


def _site_not_found(site_id: int) -> FileRefused:
    return FileRefused(
        f"site {site_id} does not exist (never deployed, or deleted: its files are in the trash)",
        code=ErrorCode.SITE_NOT_FOUND,
    )
