"""Dumps of a site's database by its engine's own program (pg_dump, mariadb-dump): streamed to a
requester as replies (`database.dump`, like `files.archive`), or written to a file in the trash
(the final dump of a database about to be dropped).

The program runs as a child of the orchestrator with the admin's password in its environment only.
Its output is read a chunk at a time (a slow requester slows the dump, not our memory) and is
bounded (`DATABASE_MAX_DUMP_BYTES`); dumps run at most `DATABASE_MAX_DUMPS` at once, one per site.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from orchestrator.bus.outcomes import Requester
from orchestrator.bus.replies import error_reply, ok_reply
from orchestrator.config import Settings
from orchestrator.databases.engines import DumpCommand
from orchestrator.errors import DatabaseRefused, DatabaseUnavailable, OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.databases import DumpChunk

log = logging.getLogger("orchestrator.databases")
# (reply_to, correlation_id, body) -> whether the reply was routed (False: the requester is gone).
Send = Callable[[str, str, bytes], Awaitable[bool]]
# A stream's replies go through a channel of its own, open while it runs (bus.replies.ReplyPublisher).
Replies = Callable[[], AbstractAsyncContextManager[Send]]
STDERR_TAIL = 2000


class Dumps:
    def __init__(self, replies: Replies, *, max_dumps: int, max_bytes: int, chunk_bytes: int) -> None:
        self._replies = replies
        self._max = max_dumps
        self._max_bytes = max_bytes
        self._chunk = chunk_bytes
        self._running: dict[asyncio.Task[None], int] = {}

    @classmethod
    def of(cls, replies: Replies, settings: Settings) -> Dumps:
        return cls(
            replies,
            max_dumps=settings.database_max_dumps,
            max_bytes=settings.database_max_dump_bytes,
            chunk_bytes=settings.files_chunk_bytes,
        )

    def _admit(self, site_id: int) -> None:
        if len(self._running) >= self._max:
            raise DatabaseRefused(f"{len(self._running)} dumps are running (DATABASE_MAX_DUMPS)", code=ErrorCode.BUSY)
        if site_id in self._running.values():
            raise DatabaseRefused(f"a dump of site {site_id} is running", code=ErrorCode.BUSY)

    async def stream(self, site_id: int, command: DumpCommand, requester: Requester) -> None:
        """Start streaming a dump; its first chunk is read before this returns (so a dump that
        cannot start is the request's own error reply)."""
        self._admit(site_id)
        chunks = _chunks(command, self._chunk, self._max_bytes)
        try:
            first = await anext(chunks, None)
        except BaseException:
            await chunks.aclose()
            raise
        task = asyncio.create_task(self._forward(command, chunks, first, requester))
        self._running[task] = site_id
        task.add_done_callback(self._running.pop)

    async def _forward(
        self, command: DumpCommand, chunks: AsyncGenerator[bytes, None], chunk: bytes | None, requester: Requester
    ) -> None:
        async with self._replies() as send:
            await self._send_all(send, command, chunks, chunk, requester)

    async def _send_all(
        self,
        send: Send,
        command: DumpCommand,
        chunks: AsyncGenerator[bytes, None],
        chunk: bytes | None,
        requester: Requester,
    ) -> None:
        digest, size, seq = hashlib.sha256(), 0, 0
        try:
            while True:
                following = await anext(chunks, None)
                data = chunk or b""
                digest.update(data)
                size += len(data)
                last = following is None
                reply = DumpChunk(
                    seq=seq,
                    data=base64.b64encode(data).decode("ascii"),
                    last=last,
                    format=command.format,
                    sha256=digest.hexdigest() if last else None,
                    size=size if last else None,
                )
                if not await send(requester.reply_to, requester.correlation_id, ok_reply(reply)) or last:
                    return
                seq, chunk = seq + 1, following
        except asyncio.CancelledError:
            await send(requester.reply_to, requester.correlation_id, error_reply(ErrorCode.IO_ERROR, "ended"))
        except OrchestratorError as exc:
            await send(requester.reply_to, requester.correlation_id, error_reply(exc.code, exc.message))
        finally:
            await chunks.aclose()

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(list(self._running))


async def write_dump(command: DumpCommand, path: Path, *, chunk_bytes: int, max_bytes: int) -> int:
    """The whole dump into `path` (made 0600, synced); its size. A failed dump leaves no file."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in _chunks(command, chunk_bytes, max_bytes):
                await asyncio.to_thread(out.write, chunk)
                size += len(chunk)
            await asyncio.to_thread(out.flush)
            await asyncio.to_thread(os.fsync, out.fileno())
        os.rename(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return size


async def _chunks(command: DumpCommand, chunk_bytes: int, max_bytes: int) -> AsyncGenerator[bytes, None]:
    """The dump program's output in chunks; our error when it fails or outgrows `max_bytes`."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", **command.env}
    try:
        process = await asyncio.create_subprocess_exec(
            *command.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        raise DatabaseRefused(f"{command.argv[0]} could not start: {exc}", code=ErrorCode.DATABASE_ERROR) from None
    assert process.stdout is not None and process.stderr is not None
    errors = asyncio.create_task(process.stderr.read(64 * 1024))
    total = 0
    try:
        while True:
            chunk = await _read(process.stdout, chunk_bytes)
            if not chunk:
                break
            total += len(chunk)
            if max_bytes and total > max_bytes:
                raise DatabaseRefused(
                    f"the dump is larger than {max_bytes} bytes (DATABASE_MAX_DUMP_BYTES)", code=ErrorCode.TOO_LARGE
                )
            yield chunk
        code = await process.wait()
        if code != 0:
            said = (await errors).decode(errors="replace").strip()[-STDERR_TAIL:]
            failed = DatabaseUnavailable if _unreachable(said) else DatabaseRefused
            raise failed(f"{command.argv[0]} failed ({code}): {said}")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        errors.cancel()
        log.debug("dump ended", extra=fields(program=command.argv[0], bytes=total))


async def _read(stream: asyncio.StreamReader, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = await stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _unreachable(stderr: str) -> bool:
    said = stderr.lower()
    return any(sign in said for sign in ("connection refused", "could not connect", "can't connect", "timeout expired"))
