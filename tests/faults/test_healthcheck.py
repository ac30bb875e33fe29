"""`orchestrator healthcheck` (the container's HEALTHCHECK) follows the broker: non-zero while
RabbitMQ is down, zero again once the orchestrator has reconnected and consumes. The broker is
the module's own (conftest.py): stopping it drops no other test's connections."""

from __future__ import annotations

import asyncio

from support import OrchestratorProcess, eventually
from support.rabbit import Broker


async def test_healthcheck_fails_while_the_broker_is_down_and_recovers(
    orchestrator: OrchestratorProcess, broker: Broker
) -> None:
    await eventually(lambda: orchestrator.healthcheck().returncode == 0, timeout=20)

    await asyncio.to_thread(broker.stop_app)  # the application stops; its node stays up
    try:
        await eventually(lambda: orchestrator.healthcheck().returncode != 0, timeout=20)
        failing = orchestrator.healthcheck()
        assert "broker" in failing.stderr, failing.stderr
    finally:
        await asyncio.to_thread(broker.start_app)

    await eventually(lambda: orchestrator.healthcheck().returncode == 0, timeout=60)
    assert orchestrator.alive
