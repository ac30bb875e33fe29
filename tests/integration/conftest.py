"""Fixtures for the real stack. Each test session gets its own RabbitMQ vhost, sites root and
orchestrator process; site ids 9000-9999 belong to the tests and are wiped before and after."""

from __future__ import annotations

import shutil
import uuid
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
    docker_api,
    fresh_site_id,
    make_vhost,
    orchestrator_env,
    orchestrator_running,
    publishing_as_director,
    rabbitmqctl,
    wipe_test_sites,
)

VHOST = "orchestrator-test"


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    make_vhost(VHOST)
    yield VHOST
    rabbitmqctl("delete_vhost", VHOST)


@pytest.fixture(scope="session")
def api() -> Iterator[docker.APIClient]:
    client = docker_api()
    wipe_test_sites(client)
    yield client
    wipe_test_sites(client)


@pytest.fixture(scope="session")
def sites_root() -> Iterator[Path]:
    root = Path(f"/tmp/orchestrator-test-{uuid.uuid4().hex[:8]}/sites")
    root.mkdir(parents=True)
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


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
