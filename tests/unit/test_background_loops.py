"""The app's background loops (`orchestrator.background`): one that fails stops the process at once and is
logged, its error raised on the way down; one with nothing to do may return."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from orchestrator.background import background
from orchestrator.config import Settings
from orchestrator.monitor.housekeeping import drop_retired


async def test_a_failing_loop_is_logged_and_stops_the_process(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()

    async def drop_retired() -> None:
        await asyncio.sleep(0.01)
        raise TypeError("int() argument must be a string, a bytes-like object or a real number, not 'NoneType'")

    with pytest.raises(TypeError, match="NoneType"):
        async with contextlib.AsyncExitStack() as stack:
            background(stack, stop, drop_retired())
            async with asyncio.timeout(2):
                await stop.wait()

    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "a background loop ended: stopping"
    assert "drop_retired" in str(record.__dict__.get("fields"))


async def test_a_loop_with_nothing_to_do_returns_and_stops_nothing() -> None:
    stop = asyncio.Event()

    async def nothing_to_do() -> None:
        return

    async with contextlib.AsyncExitStack() as stack:
        background(stack, stop, nothing_to_do())
        await asyncio.sleep(0.05)
        assert not stop.is_set()


async def test_a_housekeeping_pass_that_fails_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    """A full disk under the trash fails one pass; the loop goes on (stopping would restart every
    replica in turn as it takes over, each hitting the same disk)."""
    passes = 0

    class FullDisk:
        async def holdings(self) -> list[object]:
            nonlocal passes
            passes += 1
            raise OSError(28, "No space left on device")

    active = asyncio.Event()
    active.set()
    settings = Settings(housekeeping_seconds=0.01)
    loop = asyncio.create_task(drop_retired(FullDisk(), None, settings, active))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.2)
        assert not loop.done() and passes > 2
    finally:
        loop.cancel()
    assert "dropping retired databases failed" in caplog.text
