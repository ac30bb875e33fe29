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
    docker_api,
    fresh_site_id,
    make_vhost,
    orchestrator_env,
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
    process = OrchestratorProcess(orchestrator_env(vhost, sites_root), tmp_path_factory.mktemp("logs") / "orch.log")
    process.start()
    await process.wait_consuming()
    yield process
    if process.alive:
        code = process.stop()
        assert code == 0, f"orchestrator exited {code} on SIGTERM: {process.tail()}"


@pytest.fixture(scope="session")
async def admin(vhost: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    yield connection
    await connection.close()


@pytest.fixture(scope="session")
async def results(admin: aio_pika.abc.AbstractRobustConnection, orchestrator: OrchestratorProcess) -> Results:
    listener = Results(admin)
    await listener.start()
    return listener


@pytest.fixture(scope="session")
async def director(vhost: str, orchestrator: OrchestratorProcess) -> AsyncIterator[Director]:
    connection = await aio_pika.connect_robust(f"amqp://director:director@127.0.0.1:5672/{vhost}")
    publisher = Director(connection)
    await publisher.start()
    yield publisher
    await connection.close()


@pytest.fixture
def site_id() -> int:
    """A fresh site id from the tests' range."""
    return fresh_site_id()
