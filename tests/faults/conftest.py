"""Fault tests get a stack per module (`support.running`), tuned to ride out a Docker outage,
listening on the durable results queue (results published while the broker restarts are not
missed). The faults are real but the module's own: its orchestrator's broker is a RabbitMQ node
started for the test process (`support.rabbit.own_broker`; a vhost per module), restarted and
stopped for real, and its Docker is reached through a gate the tests hang (`gate`:
tests/conftest.py), so nothing else on the machine notices (when `make test` runs them:
docs/development.md). The one fault of the whole machine, a real dockerd stop (every container
restarts), is marked `faults` and `slow`: `make test-slow`, alone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from support import Running, scope
from support.dockergate import DockerGate
from support.streams import stream_stack

from harness.rabbit import Broker, own_broker


@pytest.fixture(scope="session")  # one node per test process, a vhost per module
def broker() -> Iterator[Broker]:
    with own_broker(f"faults-{scope.NAME}") as node:
        yield node


@pytest.fixture(scope="module")
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, broker: Broker, gate: DockerGate
) -> AsyncIterator[Running]:
    async with stream_stack("faults", request, tmp_path_factory, broker, docker_url=gate.url) as running:
        yield running
