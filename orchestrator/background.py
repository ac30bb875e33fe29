"""The app's background loops (heartbeat, housekeeping, retired databases, drift reports, the
certificate issuer, metrics): started once, cancelled and waited for on the way down, and
watched: one that fails stops the process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine
from typing import Any

from orchestrator.logging_setup import fields

log = logging.getLogger("orchestrator")


def background(stack: contextlib.AsyncExitStack, stop: asyncio.Event, *work: Coroutine[Any, Any, None]) -> None:
    """Loops that run until the process stops (or return at once, with nothing to do): cancelled,
    and waited for, on the way down. A loop that fails is logged at once and the process stops
    (exit 1, its error raised on the way down), so the replica is restarted rather than left
    running without it."""
    for task in map(asyncio.create_task, work):
        task.add_done_callback(functools.partial(_ended, stop))
        stack.push_async_callback(_cancelled, task)


def _ended(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    if task.cancelled() or stop.is_set() or (error := task.exception()) is None:
        return
    log.error(
        "a background loop ended: stopping",
        extra=fields(loop=getattr(task.get_coro(), "__qualname__", task.get_name()), error=repr(error)),
        exc_info=error,
    )
    stop.set()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task])  # its end, not its CancelledError: a cancellation of ours still reaches us
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error
