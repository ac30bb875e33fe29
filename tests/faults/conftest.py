"""Fault tests get a stack per module (`support.running`), tuned to ride out a Docker outage,
listening on the durable results queue (results published while the broker restarts are not
missed). They restart RabbitMQ and stop dockerd for the whole machine, so they run alone, after
everything else (`make test`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support import Running
from support.streams import stream_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="module")
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    async with stream_stack("faults", request, tmp_path_factory) as running:
        yield running
