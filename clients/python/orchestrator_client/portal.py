"""An event loop in a thread of its own, for callers without one (a Django view, a Celery task):
each call runs a coroutine there and blocks the calling thread until it is done. Thread-safe: any
number of threads may call at once. Not fork-safe: make it after the fork (one per process)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


class Portal:
    def __init__(self, name: str = "orchestrator-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`await fn(*args, **kwargs)` on the loop; its result or its exception, here. Interrupted
        (KeyboardInterrupt, a worker's time limit), the coroutine is cancelled."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a SyncClient call from its own loop thread would wait forever: use the Client")

        async def run() -> T:
            return await fn(*args, **kwargs)

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """The async iterator's items, one call each; closed with the generator."""
        try:
            while True:
                try:
                    item = self.call(iterator.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            close: Callable[[], Awaitable[Any]] | None = getattr(iterator, "aclose", None)
            if close is not None and self.loop.is_running():
                self.call(close)

    def enter(self, context: AbstractAsyncContextManager[T]) -> T:
        return self.call(context.__aenter__)

    def exit(self, context: AbstractAsyncContextManager[Any], *exc: Any) -> None:
        self.call(context.__aexit__, *exc)

    def stop(self) -> None:
        """Stop the loop and its thread (after the client is closed)."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()
