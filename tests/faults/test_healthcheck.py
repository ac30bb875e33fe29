"""`orchestrator healthcheck` (the container's HEALTHCHECK) while RabbitMQ is down: it says the
broker is away and that the process is reconnecting, but does not fail (Swarm would replace every
replica of a long outage, over and over, for nothing: `ops.heartbeat`); once the orchestrator has
reconnected and consumes, it no longer says so. The broker is the module's own (conftest.py):
stopping it drops no other test's connections."""

from __future__ import annotations

import asyncio

from support import OrchestratorProcess, eventually

from harness.rabbit import Broker


async def test_healthcheck_says_the_broker_is_away_without_failing(
    orchestrator: OrchestratorProcess, broker: Broker
) -> None:
    await eventually(lambda: orchestrator.healthcheck().returncode == 0, timeout=20)

    def says_away() -> bool:
        done = orchestrator.healthcheck()
        assert done.returncode == 0, f"the check failed while the broker was away: {done.stderr}"
        return "degraded: not connected to the broker for" in done.stdout

    await asyncio.to_thread(broker.stop_app)  # the application stops; its node stays up
    try:
        await eventually(says_away, timeout=20)
    finally:
        await asyncio.to_thread(broker.start_app)

    def back() -> bool:
        done = orchestrator.healthcheck()
        return done.returncode == 0 and "degraded" not in done.stdout

    await eventually(back, timeout=60)
    assert orchestrator.alive
