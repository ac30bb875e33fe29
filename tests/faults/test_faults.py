"""Never lose an event: 200 events over 20 sites while what the orchestrator depends on misbehaves
(its broker restarts, its Docker hangs or dockerd stops). After each fault every site's service
matches its newest version (absent if that was a delete), every event id has a result or sits in
the dead-letter queue with a reason, and the consumer still serves. The broker and the Docker gate
are this module's own (conftest.py); the real dockerd stop is the whole machine's, so it runs alone
(`make test-slow`). tests/resilience holds the faults of our own process: kill -9, SIGTERM, a
standby, reordering, poison. Loss counts are printed in the run's summary.
"""

from __future__ import annotations

import asyncio
from typing import Any

import docker
import pytest
from support import Director, OrchestratorProcess, Results
from support.dockergate import DockerGate
from support.streams import new_stream, run, start_dockerd, stop_dockerd

from harness.rabbit import Broker


async def test_a_broker_restart_then_a_hung_dockerd_mid_stream_lose_nothing(
    director: Director,
    results: Results,
    admin: Any,
    api: docker.APIClient,
    orchestrator: OrchestratorProcess,
    broker: Broker,
    gate: DockerGate,
) -> None:
    """Half-way through the stream the broker restarts (every connection drops; queues keep what
    they hold), and once it is back Docker hangs for 12 s (the gate stopped: every call times out,
    well past the in-process retries, so events ride it out through the delayed-retry queue). One
    stream for both: each fault on its own stream cost the run a stream's worth of deploys."""
    stream = new_stream(1)

    async def faults() -> None:
        await asyncio.to_thread(broker.restart_app)
        await asyncio.to_thread(gate.hang, 12)

    await run("rabbitmq restart, then dockerd hung 12s", director, results, admin, api, stream.events, stream, faults)
    # Both faults reached the orchestrator (nothing lost is no proof if nothing happened): the
    # broker closed its connection, and events met the hang and went round the delayed retry.
    log = orchestrator.log_lines()
    assert any("CONNECTION_FORCED" in str(line.get("msg")) for line in log)
    assert any(line.get("outcome") == "retry_later" and line.get("code") == "docker_unavailable" for line in log)


@pytest.mark.faults
@pytest.mark.slow
async def test_docker_down_for_20s_mid_stream_loses_nothing(
    director: Director, results: Results, admin: Any, api: docker.APIClient
) -> None:
    """dockerd stopped and started again: the event stream is lost and resumed, every container
    restarts. A minute on this machine, so `make test-slow` runs it, not `make test`."""
    stream = new_stream(6)

    async def fault() -> None:
        await asyncio.to_thread(stop_dockerd)
        await asyncio.sleep(20)
        await asyncio.to_thread(start_dockerd)

    await run("dockerd down 20s", director, results, admin, api, stream.events, stream, fault)
