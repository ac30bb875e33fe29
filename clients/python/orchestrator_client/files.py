"""A site's files, as Director's file manager uses them: paths are relative to the site directory
(`""` is the site root), checked by the orchestrator, which never follows a link out of it.

    entries = [e async for e in client.files.list_all(7, "public")]
    await client.files.write(7, "public/index.html", b"<h1>hi</h1>")
    data = await client.files.read_all(7, "public/index.html")

A refusal raises its typed error (`UnsafePath`, `NotFound`, `PreconditionFailed`, ...).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import IO

from orchestrator_client.errors import PreconditionFailed
from orchestrator_client.requests import Requests
from orchestrator_contract.files import (
    ArchiveChunk,
    DeleteResult,
    Entry,
    EntryResult,
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
    ListResult,
    ReadResult,
    StatResult,
    UsageResult,
    WriteResult,
)

DEFAULT_CHUNK = 1024 * 1024


class Files:
    def __init__(self, requests: Requests) -> None:
        self._requests = requests

    async def list(self, site_id: int, path: str = "", cursor: str | None = None, limit: int = 200) -> ListResult:
        """One page of a directory's entries, sorted by name (`next_cursor` asks for the next)."""
        result = await self._requests.call(
            FilesList(site_id=site_id, path=path, cursor=cursor, limit=limit), ListResult
        )
        return result

    async def list_all(self, site_id: int, path: str = "", limit: int = 1000) -> AsyncIterator[Entry]:
        """Every entry of the directory, page by page."""
        cursor = None
        while True:
            page = await self.list(site_id, path, cursor, limit)
            for entry in page.entries:
                yield entry
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def stat(self, site_id: int, path: str = "") -> StatResult:
        """One entry (a link itself, never its target) and a regular file's `etag`."""
        result = await self._requests.call(FilesStat(site_id=site_id, path=path), StatResult)
        return result

    async def read(
        self, site_id: int, path: str, offset: int = 0, length: int | None = None
    ) -> tuple[bytes, ReadResult]:
        """A byte range of a regular file (`length` None: the orchestrator's chunk size): its bytes
        and the reply (`size`, `eof`, `etag`)."""
        result = await self._requests.call(
            FilesRead(site_id=site_id, path=path, offset=offset, length=length), ReadResult
        )
        return base64.b64decode(result.data), result

    async def download(
        self, site_id: int, path: str, *, chunk: int = DEFAULT_CHUNK, window: int = 4
    ) -> AsyncIterator[bytes]:
        """The file's bytes in order, `window` reads in flight; `PreconditionFailed` when the
        file changes meanwhile."""
        etag: str | None = None
        offset = 0
        inflight: builtins.list[asyncio.Task[tuple[bytes, ReadResult]]] = []
        ended = False
        try:
            while True:
                while not ended and len(inflight) < window:
                    inflight.append(asyncio.create_task(self.read(site_id, path, offset, chunk)))
                    offset += chunk
                if not inflight:
                    return
                data, result = await inflight.pop(0)
                if etag is None:
                    etag = result.etag
                elif result.etag != etag:
                    raise PreconditionFailed(f"{path} changed during the download")
                if data:
                    yield data
                if result.eof or len(data) < chunk:
                    ended = True
                    for task in inflight:
                        task.cancel()
                    inflight.clear()
        finally:
            for task in inflight:
                task.cancel()

    async def read_all(self, site_id: int, path: str, *, chunk: int = DEFAULT_CHUNK, window: int = 4) -> bytes:
        """The whole file (see `download`)."""
        return b"".join([piece async for piece in self.download(site_id, path, chunk=chunk, window=window)])

    async def write(
        self,
        site_id: int,
        path: str,
        data: bytes | IO[bytes],
        *,
        chunk: int = DEFAULT_CHUNK,
        window: int = 8,
        if_match: str | None = None,
        if_none_match: bool = False,
        mode: int | None = None,
    ) -> WriteResult:
        """Upload `data` (bytes, or a binary file read a chunk at a time) as `path`: chunks with
        `window` in flight, the last one `final`; the file appears whole or not at all.
        `if_match`: only replace the file whose `etag` this is; `if_none_match`: only create."""
        upload_id = uuid.uuid4()
        source = _pieces(data, chunk)
        offset = 0
        inflight: builtins.list[asyncio.Task[WriteResult]] = []
        try:
            piece = next(source, b"")
            while True:
                following = next(source, None)
                request = FilesWrite(
                    site_id=site_id,
                    path=path,
                    upload_id=upload_id,
                    offset=offset,
                    data=base64.b64encode(piece).decode("ascii"),
                    final=following is None,
                    if_match=if_match,
                    if_none_match=if_none_match,
                    mode=mode,
                )
                inflight.append(asyncio.create_task(self._requests.call(request, WriteResult)))
                offset += len(piece)
                if following is None:
                    break
                piece = following
                while len(inflight) >= window:
                    await inflight.pop(0)
            return [await task for task in inflight][-1]
        finally:
            for task in inflight:
                task.cancel()

    async def mkdir(self, site_id: int, path: str, *, parents: bool = False, mode: int | None = None) -> Entry:
        result = await self._requests.call(
            FilesMkdir(site_id=site_id, path=path, parents=parents, mode=mode), EntryResult
        )
        return result.entry

    async def rename(self, site_id: int, path: str, to: str, *, overwrite: bool = False) -> Entry:
        result = await self._requests.call(
            FilesRename(site_id=site_id, path=path, to=to, overwrite=overwrite), EntryResult
        )
        return result.entry

    async def delete(self, site_id: int, path: str, *, recursive: bool = False) -> int:
        """How many entries went (a directory and everything in it counts each)."""
        result = await self._requests.call(FilesDelete(site_id=site_id, path=path, recursive=recursive), DeleteResult)
        return result.deleted

    async def chmod(self, site_id: int, path: str, mode: int) -> Entry:
        result = await self._requests.call(FilesChmod(site_id=site_id, path=path, mode=mode), EntryResult)
        return result.entry

    async def usage(self, site_id: int, path: str = "") -> UsageResult:
        result = await self._requests.call(FilesUsage(site_id=site_id, path=path), UsageResult)
        return result

    async def archive(self, site_id: int, path: str = "") -> AsyncIterator[bytes]:
        """A zip of the directory, chunk by chunk; its sha256 is checked at the end (`IoError`)."""
        async for data in self._requests.chunks(FilesArchive(site_id=site_id, path=path), ArchiveChunk, "archive"):
            yield data


def _pieces(data: bytes | IO[bytes], size: int) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])
        return
    while piece := data.read(size):
        yield piece
