"""The app's background loops (`orchestrator.background`): one that fails stops the process at once and is
logged, its error raised on the way down; one with nothing to do may return."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from orchestrator.background import background


async def test_a_failing_loop_is_logged_and_stops_the_process(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()

    async def drop_retired() -> None:
        await asyncio.sleep(0.01)
        raise TypeError("int() argument must be a string, a bytes-like object or a real number, not 'NoneType'")

    with pytest.raises(TypeError, match="NoneType"):
        async with contextlib.AsyncExitStack() as stack:
            background(stack, stop, drop_retired())
            await asyncio.wait_for(stop.wait(), 2)

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
