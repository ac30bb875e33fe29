"""A site's logs: the last lines of its tasks, or its lines as they come.

    lines = await client.logs.tail(7, lines=50)
    async with client.logs.follow(7, lines=10) as follow:
        async for update in follow:          # LogsUpdate, in `seq` order
            for line in update.lines: ...

Env values of the site are masked (`***`) by the orchestrator. A follow ends with the reply whose
`last` is true (`follow.ended.reason` says why: `logs.stop`, the site deleted, a limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, Self

from orchestrator_client.errors import OrchestratorError
from orchestrator_client.requests import Requests, result_of
from orchestrator_contract.files import LogLine, LogsFollow, LogsResult, LogsStop, LogsStopResult, LogsTail, LogsUpdate


class Logs:
    def __init__(self, requests: Requests) -> None:
        self._requests = requests

    async def tail(self, site_id: int, lines: int = 100) -> list[LogLine]:
        """The last `lines` lines of the site's service tasks, oldest first."""
        return (await self._requests.call(LogsTail(site_id=site_id, lines=lines), LogsResult)).lines

    def follow(self, site_id: int, lines: int = 0) -> LogFollow:
        """A `logs.follow` stream (`lines` of backlog first), stopped when the context exits."""
        return LogFollow(self._requests, site_id, lines)


class LogFollow:
    """The replies of one `logs.follow`, in `seq` order, until the stream's last one."""

    def __init__(self, requests: Requests, site_id: int, lines: int) -> None:
        self._requests = requests
        self.site_id = site_id
        self.lines = lines
        self.stream_id = uuid.uuid4()
        self.ended: LogsUpdate | None = None
        self._replies: asyncio.Queue[dict[str, Any]] | None = None
        self._context: contextlib.AbstractAsyncContextManager[asyncio.Queue[dict[str, Any]]] | None = None

    async def __aenter__(self) -> Self:
        self._context = self._requests.stream(
            LogsFollow(site_id=self.site_id, stream_id=self.stream_id, lines=self.lines)
        )
        self._replies = await self._context.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ended is None:
            with contextlib.suppress(OrchestratorError, TimeoutError):
                await self.stop()
        if self._context is not None:
            await self._context.__aexit__(None, None, None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LogsUpdate:
        update = await self.next(self._requests.timeout)
        if update is None:
            raise StopAsyncIteration
        return update

    async def next(self, timeout: float) -> LogsUpdate | None:
        """The next reply (None: the stream ended before); TimeoutError if none came in time."""
        if self.ended is not None:
            return None
        if self._replies is None:
            raise RuntimeError("enter the follow first: `async with client.logs.follow(...) as follow:`")
        async with asyncio.timeout(timeout):
            update = result_of(await self._replies.get(), LogsUpdate)
        if update.last:
            self.ended = update
        return update

    async def stop(self) -> bool:
        """Ask the orchestrator to end the stream; False when it had ended already."""
        request = LogsStop(site_id=self.site_id, stream_id=self.stream_id)
        return (await self._requests.call(request, LogsStopResult)).stopped
