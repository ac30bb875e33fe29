"""Resilience tests get a stack per module (`support.running`), tuned to ride out trouble (many
delayed retries), listening on the durable results queue, like the fault tests; unlike them they
disturb nothing outside their own orchestrator, so they run on the parallel workers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support import Running
from support.streams import stream_stack


@pytest.fixture(scope="module")
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    async with stream_stack("resilience", request, tmp_path_factory) as running:
        yield running
