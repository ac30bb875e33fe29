"""Test support for the real stack: Director's publisher, a result listener, the orchestrator process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import docker
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from orchestrator.contract.results import SiteHealth, SiteResult

ADMIN_URL = os.environ.get("TEST_ADMIN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DIRECTOR_URL = os.environ.get("TEST_DIRECTOR_AMQP_URL", "amqp://director:director@127.0.0.1:5672/")
TRAEFIK = os.environ.get("TEST_TRAEFIK_URL", "http://127.0.0.1:8000")
TRAEFIK_API = os.environ.get("TEST_TRAEFIK_API_URL", "http://127.0.0.1:8080")
INBOUND = "director.sites"
RESULTS = "orchestrator.results"
ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
DEAD_LETTERS = "orchestrator.site-events.dead"
SITE_RESULTS = "orchestrator.site-results"
TEST_SITE_IDS = range(9000, 10000)
_next_site = itertools.count(9000)


def site_event(
    type_: str,
    site_id: int,
    version: int,
    *,
    domains: list[str] | None = None,
    kind: str = "dynamic",
    serving: bool = True,
    image: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event as Director publishes it."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "occurred_at": datetime.now(UTC).isoformat(),
        "version": version,
    }
    if type_ in ("site.deleted", "site.restart_requested"):
        event["site"] = {"id": site_id}
        return event
    event["site"] = {
        "id": site_id,
        "name": f"test site {site_id}",
        "kind": kind,
        "domains": domains if domains is not None else [f"site{site_id}.test.example.com"],
        "image": image or {"name": "director/base:latest", "custom": False},
        "resources": resources or {"cpus": 0.25, "memory": "64Mi"},
        "serving": serving,
        "env": env or {},
    }
    return event


class Director:
    """Publishes like Director: durable exchange, persistent JSON, message_id = event_id, user_id set."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self.connection = connection
        self.channel: Any = None

    async def start(self) -> None:
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.declare_exchange(INBOUND, aio_pika.ExchangeType.TOPIC, durable=True)

    async def publish(
        self,
        event: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        routing_key: str | None = None,
        user_id: str | None = "director",
        message_id: str | None = None,
    ) -> None:
        if body is None:
            assert event is not None
            body = json.dumps(event).encode()
        if routing_key is None:
            assert event is not None
            routing_key = event["type"]
        await self.exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id or (event or {}).get("event_id") or str(uuid.uuid4()),
                user_id=user_id,
            ),
            routing_key,
        )


class Results:
    """Collects every result event the orchestrator publishes, keyed by the inbound event id."""

    def __init__(self, connection: AbstractRobustConnection, queue: str | None = None) -> None:
        """Listen on a private queue, or on a durable `queue` that survives broker restarts."""
        self.connection = connection
        self.queue_name = queue
        self.by_cause: dict[str, list[SiteResult]] = {}
        self.messages: list[AbstractIncomingMessage] = []
        self.health: list[SiteHealth] = []
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        channel = await self.connection.channel()
        if self.queue_name:
            queue = await channel.declare_queue(self.queue_name, passive=True)
        else:
            exchange = await channel.declare_exchange(RESULTS, aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange, "#")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if message.routing_key == "site.health":
            health = SiteHealth.model_validate_json(message.body)
            async with self._changed:
                self.health.append(health)
                self._changed.notify_all()
            return
        result = SiteResult.model_validate_json(message.body)
        async with self._changed:
            self.messages.append(message)
            self.by_cause.setdefault(str(result.causation_id), []).append(result)
            self._changed.notify_all()

    async def wait_for(self, event_id: str, timeout: float = 90) -> SiteResult:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: event_id in self.by_cause)
        return self.by_cause[event_id][0]

    async def wait_health(self, site_id: int, count: int, timeout: float = 60) -> list[SiteHealth]:
        """Until `count` site.health events arrived for the site; all of them."""

        def of_site() -> list[SiteHealth]:
            return [h for h in self.health if h.site_id == site_id]

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(of_site()) >= count)
        return of_site()

    async def wait_total(self, count: int, timeout: float) -> None:
        """Until `count` results arrived in all."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.messages) >= count)

    async def wait_for_site(self, site_id: int, timeout: float = 30) -> SiteResult:
        """The first result about `site_id` (for events whose id could not be read)."""

        def found() -> SiteResult | None:
            return next((r for rs in self.by_cause.values() for r in rs if r.site_id == site_id), None)

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        result = found()
        assert result is not None
        return result


async def deploy(director: Director, results: Results, event: dict[str, Any], timeout: float = 90) -> SiteResult:
    """Publish as Director and wait for the event's result."""
    await director.publish(event)
    return await results.wait_for(str(event["event_id"]), timeout=timeout)


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 30, interval: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {getattr(check, '__name__', check)}")
        await asyncio.sleep(interval)


async def fetch(host: str, path: str = "/") -> httpx.Response:
    """A request through Traefik's loopback entrypoint with the site's Host header."""
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(f"{TRAEFIK}{path}", headers={"Host": host})


async def served(host: str, text: str, timeout: float = 30) -> str:
    """Wait until Traefik routes `host` and the page contains `text`; return the page."""
    last = ""

    async def ok() -> bool:
        nonlocal last
        try:
            response = await fetch(host)
        except httpx.HTTPError as exc:
            last = repr(exc)
            return False
        last = f"{response.status_code} {response.text[:200]!r}"
        return response.status_code == 200 and text in response.text

    try:
        await eventually(ok, timeout)
    except AssertionError:
        raise AssertionError(f"{host} not served with {text!r}; last answer: {last}") from None
    return last


def docker_api() -> docker.APIClient:
    return docker.APIClient(version="auto")


def service(api: docker.APIClient, name: str) -> dict[str, Any] | None:
    try:
        return api.inspect_service(name)  # type: ignore[no-any-return]
    except docker.errors.NotFound:
        return None


class OrchestratorProcess:
    """The real orchestrator, as a child process, with its JSON log captured to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run"], env=self.env, stdout=log, stderr=log, cwd=ROOT
        )

    async def wait_consuming(self, timeout: float = 60) -> None:
        """Wait for the "consuming" log line of the current start."""

        def consuming() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"orchestrator exited with {self.proc.returncode}: {self.tail()}")
            return b'"msg": "consuming"' in self.log_path.read_bytes()[self._offset :]

        await eventually(consuming, timeout)

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """`orchestrator healthcheck` as Docker's HEALTHCHECK runs it, against this process."""
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", "healthcheck"],
            env=self.env, capture_output=True, text=True, timeout=30, cwd=ROOT,
        )  # fmt: skip

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def fresh_site_id() -> int:
    return next(_next_site)


def write_site(sites_root: Path, site_id: int, *, page: str, run_sh: bool = True) -> Path:
    """Files a site owner would have uploaded: a page and a run.sh serving it with busybox httpd."""
    site_dir = sites_root / f"site_{site_id:04d}"
    (site_dir / "public").mkdir(parents=True, exist_ok=True)
    (site_dir / "private").mkdir(exist_ok=True)
    (site_dir / "public" / "index.html").write_text(page)
    if run_sh:
        (site_dir / "run.sh").write_text('#!/bin/sh\nexec httpd -f -p "$PORT" -h /site/public\n')
    return site_dir


async def drain_dead_letters(admin: AbstractRobustConnection) -> list[AbstractIncomingMessage]:
    """Take (and ack) every message in the dead-letter queue."""
    channel = await admin.channel()
    queue = await channel.declare_queue(DEAD_LETTERS, passive=True)
    taken = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    await channel.close()
    return taken


@contextlib.asynccontextmanager
async def connected(user: str, vhost: str) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection as a local-stack broker user (their passwords are their names)."""
    connection = await aio_pika.connect_robust(f"amqp://{user}:{user}@127.0.0.1:5672/{vhost}")
    try:
        yield connection
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def publishing_as_director(vhost: str) -> AsyncIterator[Director]:
    async with connected("director", vhost) as connection:
        publisher = Director(connection)
        await publisher.start()
        yield publisher


@contextlib.asynccontextmanager
async def orchestrator_running(env: dict[str, str], log_path: Path) -> AsyncIterator[OrchestratorProcess]:
    """The orchestrator consuming; on exit SIGTERM must stop it with exit code 0."""
    process = OrchestratorProcess(env, log_path)
    process.start()
    await process.wait_consuming()
    yield process
    if process.alive:
        code = process.stop()
        assert code == 0, f"orchestrator exited {code} on SIGTERM: {process.tail()}"


@contextlib.contextmanager
def fresh_vhost(name: str) -> Iterator[str]:
    make_vhost(name)
    yield name
    rabbitmqctl("delete_vhost", name)


@contextlib.contextmanager
def scratch_sites_root(prefix: str) -> Iterator[Path]:
    root = Path(f"/tmp/{prefix}-{uuid.uuid4().hex[:8]}/sites")
    root.mkdir(parents=True)
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


@contextlib.contextmanager
def docker_without_test_sites() -> Iterator[docker.APIClient]:
    """A Docker client; the tests' services and tombstones are wiped before and after."""
    wipe_test_sites(docker_api())
    yield docker_api()
    wipe_test_sites(docker_api())  # a fresh client: the daemon may have restarted meanwhile


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def broker_definitions() -> dict[str, Any]:
    """The broker's users, permissions and exchanges, as the local stack and compose.yaml load them."""
    return json.loads(DEFINITIONS.read_text())  # type: ignore[no-any-return]


def make_vhost(name: str) -> None:
    """A fresh vhost with the local stack's users and their least-privilege permissions."""
    with contextlib.suppress(subprocess.CalledProcessError):
        rabbitmqctl("delete_vhost", name)
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    # The permissions the file grants on "/", granted here on `name` instead.
    for grant in broker_definitions()["permissions"]:
        if grant["vhost"] == "/":
            rabbitmqctl("set_permissions", "-p", name, grant["user"], grant["configure"], grant["write"], grant["read"])


def orchestrator_env(vhost: str, sites_root: Path, **overrides: str) -> dict[str, str]:
    """Settings for a test orchestrator: short timings, its own vhost and sites root."""
    env = {
        "ORCHESTRATOR_AMQP_URL": f"amqp://orchestrator:orchestrator@127.0.0.1:5672/{vhost}",
        "ORCHESTRATOR_REPLAY_AMQP_URL": f"amqp://director:director@127.0.0.1:5672/{vhost}",
        "ORCHESTRATOR_SITES_ROOT": str(sites_root),
        "ORCHESTRATOR_CONVERGE_TIMEOUT_SECONDS": "45",
        # Fast health checks: a task answers within ~3 s, a silent one is found out within ~12 s.
        "ORCHESTRATOR_HEALTH_INTERVAL_SECONDS": "1",
        "ORCHESTRATOR_HEALTH_START_PERIOD_SECONDS": "10",
        "ORCHESTRATOR_HEALTH_RETRIES": "2",
        "ORCHESTRATOR_STABLE_SECONDS": "2",
        "ORCHESTRATOR_DRAIN_SECONDS": "2",
        "ORCHESTRATOR_DOMAIN_WAIT_SECONDS": "3",
        "ORCHESTRATOR_TRAEFIK_URL": TRAEFIK,
        "ORCHESTRATOR_TRAEFIK_API_URL": TRAEFIK_API,
        "ORCHESTRATOR_RETRY_BUDGET_SECONDS": "2",
        "ORCHESTRATOR_RETRY_DELAY_SECONDS": "2",
        "ORCHESTRATOR_MAX_ATTEMPTS": "2",
        "ORCHESTRATOR_UPDATE_DELAY_SECONDS": "0",
        "ORCHESTRATOR_UPDATE_MONITOR_SECONDS": "1",
        "ORCHESTRATOR_RESTART_DELAY_SECONDS": "1",
        "ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "20",
        "ORCHESTRATOR_HEARTBEAT_SECONDS": "2",
        # Long enough for a test to use its session, short enough to see one closed for idling.
        "ORCHESTRATOR_TERMINAL_IDLE_SECONDS": "20",
        "ORCHESTRATOR_HEARTBEAT_FILE": str(sites_root.parent / f"heartbeat-{vhost}"),
        "ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS": "1",
        "ORCHESTRATOR_DRIFT_REPORT_SECONDS": "0",
    }
    env.update({f"ORCHESTRATOR_{k.upper()}": v for k, v in overrides.items()})
    return env


def wipe_test_sites(api: docker.APIClient) -> None:
    """Remove every service and tombstone of the tests' site ids."""
    label = {"label": "com.director.managed-by=orchestrator"}
    for svc in api.services(filters=label):
        if int(svc["Spec"]["Labels"].get("com.director.site-id", "0")) in TEST_SITE_IDS:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_service(svc["ID"])
    for config in api.configs(filters=label):
        if int(config["Spec"]["Labels"].get("com.director.site-id", "0")) in TEST_SITE_IDS:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_config(config["ID"])
    for container in api.containers(all=True, filters=label):
        if int(container["Labels"].get("com.director.site-id", "0")) in TEST_SITE_IDS:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container["Id"], force=True)
