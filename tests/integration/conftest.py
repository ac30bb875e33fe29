"""Fixtures for the real stack. Each test session gets its own RabbitMQ vhost, sites root and
orchestrator process; site ids 9000-9999 belong to the tests and are wiped before and after."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import docker
import pytest
from support import Director, OrchestratorProcess, Results, docker_api, fresh_site_id

VHOST = "orchestrator-test"
TEST_SITE_IDS = range(9000, 10000)


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def wipe_test_sites(api: docker.APIClient) -> None:
    for svc in api.services(filters={"label": "com.director.managed-by=orchestrator"}):
        if int(svc["Spec"]["Labels"].get("com.director.site-id", "0")) in TEST_SITE_IDS:
            try:
                api.remove_service(svc["ID"])
            except docker.errors.NotFound:
                pass
    for config in api.configs(filters={"label": "com.director.managed-by=orchestrator"}):
        if int(config["Spec"]["Labels"].get("com.director.site-id", "0")) in TEST_SITE_IDS:
            try:
                api.remove_config(config["ID"])
            except docker.errors.NotFound:
                pass


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    """A fresh vhost with the local stack's users and least-privilege permissions."""
    try:
        _ctl("delete_vhost", VHOST)
    except subprocess.CalledProcessError:
        pass
    _ctl("add_vhost", VHOST)
    _ctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    _ctl("set_permissions", "-p", VHOST, "director", r"^director\.sites$", r"^director\.sites$", "^$")
    _ctl(
        "set_permissions",
        "-p",
        VHOST,
        "orchestrator",
        r"^(orchestrator\..*|director\.sites)$",
        r"^orchestrator\..*$",
        r"^(orchestrator\..*|director\.sites)$",
    )
    yield VHOST
    _ctl("delete_vhost", VHOST)


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
def orchestrator_env(vhost: str, sites_root: Path) -> dict[str, str]:
    return {
        "ORCHESTRATOR_AMQP_URL": f"amqp://orchestrator:orchestrator@127.0.0.1:5672/{vhost}",
        "ORCHESTRATOR_REPLAY_AMQP_URL": f"amqp://director:director@127.0.0.1:5672/{vhost}",
        "ORCHESTRATOR_SITES_ROOT": str(sites_root),
        "ORCHESTRATOR_CONVERGE_TIMEOUT_SECONDS": "45",
        "ORCHESTRATOR_RETRY_BUDGET_SECONDS": "4",
        "ORCHESTRATOR_RETRY_DELAY_SECONDS": "3",
        "ORCHESTRATOR_MAX_ATTEMPTS": "3",
        "ORCHESTRATOR_UPDATE_DELAY_SECONDS": "0",
        "ORCHESTRATOR_UPDATE_MONITOR_SECONDS": "1",
        "ORCHESTRATOR_RESTART_DELAY_SECONDS": "1",
        "ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "20",
        "ORCHESTRATOR_HEARTBEAT_SECONDS": "2",
    }


@pytest.fixture(scope="session")
async def orchestrator(
    orchestrator_env: dict[str, str], api: docker.APIClient, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OrchestratorProcess]:
    process = OrchestratorProcess(orchestrator_env, tmp_path_factory.mktemp("logs") / "orchestrator.log")
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
