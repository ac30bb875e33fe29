"""Fixtures for the real stack. Each test session gets its own RabbitMQ vhost, sites root and
orchestrator process; site ids 9000-9999 belong to the tests and are wiped before and after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import docker
import pytest
from support import (
    Director,
    OrchestratorProcess,
    Results,
    connected,
    docker_without_test_sites,
    fresh_site_id,
    fresh_vhost,
    orchestrator_env,
    orchestrator_running,
    publishing_as_director,
    scratch_sites_root,
)

VHOST = "orchestrator-test"


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    with fresh_vhost(VHOST) as name:
        yield name


@pytest.fixture(scope="session")
def api() -> Iterator[docker.APIClient]:
    with docker_without_test_sites() as client:
        yield client


@pytest.fixture(scope="session")
def sites_root() -> Iterator[Path]:
    with scratch_sites_root("orchestrator-test") as root:
        yield root


@pytest.fixture(scope="session")
async def orchestrator(
    vhost: str, sites_root: Path, api: docker.APIClient, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OrchestratorProcess]:
    log_path = tmp_path_factory.mktemp("logs") / "orch.log"
    async with orchestrator_running(orchestrator_env(vhost, sites_root), log_path) as process:
        yield process


@pytest.fixture(scope="session")
async def admin(vhost: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    async with connected("guest", vhost) as connection:
        yield connection


@pytest.fixture(scope="session")
async def results(admin: aio_pika.abc.AbstractRobustConnection, orchestrator: OrchestratorProcess) -> Results:
    listener = Results(admin)
    await listener.start()
    return listener


@pytest.fixture(scope="session")
async def director(vhost: str, orchestrator: OrchestratorProcess) -> AsyncIterator[Director]:
    async with publishing_as_director(vhost) as publisher:
        yield publisher


@pytest.fixture
def site_id() -> int:
    """A fresh site id from the tests' range."""
    return fresh_site_id()
