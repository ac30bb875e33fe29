"""The fixtures every real-stack suite reads from its `stack` (see `support.running`): integration
and security tests share one per test process (site ids from that process's share:
`harness.scope`); fault tests get one per module (tests/faults/conftest.py). Every site a test made
is removed when the test ends. Unit tests use none of this."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import pytest
from aio_pika.abc import AbstractRobustConnection
from support import (
    DeadLetters,
    Director,
    OrchestratorProcess,
    Results,
    Running,
    fresh_site_id,
    scope,
    stack_running,
    terminal_section,
    wipe_sites,
)
from support.dockergate import DockerGate, docker_gate


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The loss counts of the fault and resilience streams (tests/support/streams.py)."""
    from support.streams import LOSS_REPORT

    terminal_section(terminalreporter, "fault and resilience streams: loss counts", LOSS_REPORT)


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    async with stack_running("test", tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerGate]:
    """A module's own way to dockerd, which its tests can hang (`support.dockergate`): a module
    stack given `docker_url=gate.url` meets a Docker outage that no other test sees."""
    with docker_gate(tmp_path_factory.mktemp("gate") / "docker.sock") as opened:
        yield opened


@pytest.fixture(autouse=True)
def _remove_the_tests_sites(request: pytest.FixtureRequest) -> Iterator[None]:
    """Sites allocated while a test ran are removed after it: later tests are not slowed by them,
    and no test depends on another's leftovers."""
    first = scope.next_site_id()
    yield
    made = set(range(first, scope.next_site_id()))
    if made and "stack" in request.fixturenames:
        wipe_sites(request.getfixturevalue("stack").api, made)


@pytest.fixture
def site_id() -> int:
    """A fresh site id from this process's share."""
    return fresh_site_id()


@pytest.fixture
def vhost(stack: Running) -> str:
    return stack.vhost


@pytest.fixture
def api(stack: Running) -> docker.APIClient:
    return stack.api


@pytest.fixture
def sites_root(stack: Running) -> Path:
    return stack.sites_root


@pytest.fixture
def orchestrator(stack: Running) -> OrchestratorProcess:
    return stack.orchestrator


@pytest.fixture
def admin(stack: Running) -> AbstractRobustConnection:
    return stack.admin


@pytest.fixture
def results(stack: Running) -> Results:
    return stack.results


@pytest.fixture
def director(stack: Running) -> Director:
    return stack.director


@pytest.fixture
def dead_letters(stack: Running) -> DeadLetters:
    return stack.dead_letters
