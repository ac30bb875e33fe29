"""In-process locks: one site's events run one at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator


class SiteLocks:
    """One asyncio lock per site, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: defaultdict[int, int] = defaultdict(int)

    @contextlib.asynccontextmanager
    async def hold(self, site_id: int | None) -> AsyncIterator[None]:
        if site_id is None:
            yield
            return
        self._users[site_id] += 1
        lock = self._locks.setdefault(site_id, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            self._users[site_id] -= 1
            if not self._users[site_id]:
                del self._users[site_id], self._locks[site_id]
