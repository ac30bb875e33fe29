"""In-process coordination of domain claims: checked and recorded atomically, waiters woken on a
release. (One event per site at a time is the receiver's `bus.receiver.Lanes`.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Set


class _Shared:
    def __init__(self) -> None:
        self.readers = 0
        self.writer = False
        self.users = 0
        self.changed = asyncio.Condition()


class KeyedLocks:
    """Readers/writer locks by key. Keys are taken in one global order, so two holders of
    overlapping key sets never deadlock; a key's state is dropped once nobody uses it."""

    def __init__(self) -> None:
        self._keys: dict[str, _Shared] = {}

    @contextlib.asynccontextmanager
    async def hold(self, exclusive: Set[str], shared: Set[str]) -> AsyncIterator[None]:
        wanted = sorted([(key, True) for key in exclusive] + [(key, False) for key in shared - exclusive])
        taken: list[tuple[str, bool]] = []
        try:
            for key, write in wanted:
                await self._acquire(key, write)
                taken.append((key, write))
            yield
        finally:
            for key, write in reversed(taken):
                await self._release(key, write)

    async def _acquire(self, key: str, write: bool) -> None:
        state = self._keys.setdefault(key, _Shared())
        state.users += 1
        try:
            async with state.changed:
                await state.changed.wait_for(lambda: not state.writer and (not write or not state.readers))
                if write:
                    state.writer = True
                else:
                    state.readers += 1
        except BaseException:
            self._forget(key, state)
            raise

    async def _release(self, key: str, write: bool) -> None:
        state = self._keys[key]
        async with state.changed:
            if write:
                state.writer = False
            else:
                state.readers -= 1
            state.changed.notify_all()
        self._forget(key, state)

    def _forget(self, key: str, state: _Shared) -> None:
        state.users -= 1
        if not state.users:
            del self._keys[key]


class Changes:
    """Wakes whoever waits for "something changed" (e.g. a domain was let go)."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._count = 0

    async def notify(self) -> None:
        async with self._changed:
            self._count += 1
            self._changed.notify_all()

    async def wait(self, timeout: float) -> bool:
        """True when something changed within `timeout` seconds."""
        async with self._changed:
            seen = self._count
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: self._count != seen)
            except TimeoutError:
                return False
        return True
