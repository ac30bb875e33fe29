"""One chain of test fixtures for every suite: a vhost, a scratch sites root and this process's
Docker share, the orchestrator consuming, Director's connection (publishing events, reading
results) and an operator's (dead letters)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import docker
from aio_pika.abc import AbstractRobustConnection

from harness import scope
from harness.broker import DeadLetters, connected, publishing_as_director
from harness.director import Director, Results
from harness.process import OrchestratorProcess, orchestrator_env, orchestrator_running
from harness.rabbit import LOCAL_BROKER, Broker
from harness.stack import docker_without_test_sites, fresh_vhost, scratch_sites_root


@dataclass(frozen=True)
class Running:
    vhost: str
    sites_root: Path
    api: docker.APIClient
    orchestrator: OrchestratorProcess
    admin: AbstractRobustConnection  # an operator's (guest, every right): dead letters, bounds
    results: Results  # as Director reads them (its credential)
    director: Director
    dead_letters: DeadLetters
    broker: Broker = LOCAL_BROKER


@contextlib.asynccontextmanager
async def stack_running(
    name: str,
    log_dir: Path,
    *,
    results_queue: str | None = None,
    sites_root: Callable[[str], contextlib.AbstractContextManager[Path]] = scratch_sites_root,
    broker: Broker = LOCAL_BROKER,
    **settings: str,
) -> AsyncIterator[Running]:
    """Everything a test needs, torn down in reverse; `settings` override the test defaults
    (`orchestrator_env`); `results_queue`: listen on the durable results queue (survives broker
    restarts) instead of a private one; `sites_root`: makes the sites root from a name prefix;
    `broker`: the node to use (the local stack's, or a test's own)."""
    with (
        fresh_vhost(f"orchestrator-{name}-{scope.NAME}", broker) as vhost,
        sites_root(f"orchestrator-{name}-{scope.NAME}") as root,
        docker_without_test_sites() as api,
    ):
        env = orchestrator_env(vhost, root, broker, **settings)
        async with (
            orchestrator_running(env, log_dir / f"{name}.log") as process,
            connected("guest", vhost, broker) as admin,
            publishing_as_director(vhost, broker) as director,
            connected("director", vhost, broker) as listening,
        ):
            # Its own connection: a publisher's flow control never holds up the results.
            results = Results(listening, queue=results_queue)
            await results.start()
            yield Running(vhost, root, api, process, admin, results, director, DeadLetters(admin), broker)
