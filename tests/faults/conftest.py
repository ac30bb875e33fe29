"""Fault tests get their own vhost, sites root and orchestrator, tuned to ride out a 20 s Docker outage,
and print their loss counts at the end of the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import docker
import pytest
from support import (
    SITE_RESULTS,
    Director,
    OrchestratorProcess,
    Results,
    connected,
    docker_without_test_sites,
    fresh_vhost,
    orchestrator_env,
    orchestrator_running,
    publishing_as_director,
    scratch_sites_root,
)

VHOST = "orchestrator-faults"
LOSS_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LOSS_REPORT:
        terminalreporter.section("fault tests: loss counts")
        for line in LOSS_REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def fault_vhost() -> Iterator[str]:
    with fresh_vhost(VHOST) as name:
        yield name


@pytest.fixture(scope="module")
def fault_api() -> Iterator[docker.APIClient]:
    with docker_without_test_sites() as client:
        yield client


@pytest.fixture(scope="module")
def fault_root() -> Iterator[Path]:
    with scratch_sites_root("orchestrator-faults") as root:
        yield root


@pytest.fixture(scope="module")
async def fault_orchestrator(
    request: pytest.FixtureRequest,
    fault_vhost: str,
    fault_root: Path,
    fault_api: docker.APIClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[OrchestratorProcess]:
    # By default enough delayed retries to ride out a Docker outage of well over 20 s;
    # a test module can set ORCHESTRATOR_SETTINGS to change that.
    settings = {"max_attempts": "30", "retry_budget_seconds": "3", "retry_delay_seconds": "2",
                "converge_timeout_seconds": "90"}  # fmt: skip
    settings |= getattr(request.module, "ORCHESTRATOR_SETTINGS", {})
    env = orchestrator_env(fault_vhost, fault_root, **settings)
    async with orchestrator_running(env, tmp_path_factory.mktemp("logs") / "faults.log") as process:
        yield process


@pytest.fixture(scope="module")
async def fault_admin(fault_vhost: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    async with connected("guest", fault_vhost) as connection:
        yield connection


@pytest.fixture(scope="module")
async def fault_results(
    fault_admin: aio_pika.abc.AbstractRobustConnection, fault_orchestrator: OrchestratorProcess
) -> Results:
    # The durable results queue: results published while the broker restarts are not missed.
    listener = Results(fault_admin, queue=SITE_RESULTS)
    await listener.start()
    return listener


@pytest.fixture(scope="module")
async def fault_director(fault_vhost: str, fault_orchestrator: OrchestratorProcess) -> AsyncIterator[Director]:
    async with publishing_as_director(fault_vhost) as publisher:
        yield publisher
