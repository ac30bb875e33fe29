"""Resilience tests get a stack per module (`support.running`), tuned to ride out trouble (many
delayed retries), listening on the durable results queue, like the fault tests; unlike them they
disturb nothing outside their own orchestrator, so they run on the parallel workers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support import SITE_RESULTS, Running, stack_running
from support.streams import STREAM_SETTINGS


@pytest.fixture(scope="module")
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    name = f"resilience-{request.module.__name__.rsplit('.', 1)[-1]}"
    settings = STREAM_SETTINGS | getattr(request.module, "ORCHESTRATOR_SETTINGS", {})
    async with stack_running(name, tmp_path_factory.mktemp("logs"), results_queue=SITE_RESULTS, **settings) as running:
        yield running
