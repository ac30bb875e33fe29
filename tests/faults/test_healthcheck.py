"""`orchestrator healthcheck` (the container's HEALTHCHECK) follows the broker: non-zero while
RabbitMQ is down, zero again once the orchestrator has reconnected and consumes."""

from __future__ import annotations

import asyncio
import subprocess

from support import OrchestratorProcess, eventually


def _rabbitmq(action: str) -> None:
    """The broker application stopped or started (its node stays up: seconds, not a restart)."""
    subprocess.run(["rabbitmqctl", "-q", f"{action}_app"], check=True, capture_output=True, timeout=120)
    if action == "start":
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, capture_output=True, timeout=120)


async def test_healthcheck_fails_while_the_broker_is_down_and_recovers(orchestrator: OrchestratorProcess) -> None:
    await eventually(lambda: orchestrator.healthcheck().returncode == 0, timeout=20)

    await asyncio.to_thread(_rabbitmq, "stop")
    try:
        await eventually(lambda: orchestrator.healthcheck().returncode != 0, timeout=20)
        failing = orchestrator.healthcheck()
        assert "broker" in failing.stderr, failing.stderr
    finally:
        await asyncio.to_thread(_rabbitmq, "start")

    await eventually(lambda: orchestrator.healthcheck().returncode == 0, timeout=60)
    assert orchestrator.alive
