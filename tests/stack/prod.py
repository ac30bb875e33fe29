"""The production stack as its tests see it: its settings (deploy/stack-local.env), `scripts/stack.sh`,
connections to its broker over TLS as its users, its containers and what their logs say, and a
stream of site events as Director sends them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import docker
import docker.errors
from aio_pika.abc import AbstractRobustConnection
from support import ROOT, Director, Results, eventually, publish_reliably, site_event
from yarl import URL

ENV_FILE = Path(os.environ.get("STACK_ENV", ROOT / "deploy" / "stack-local.env"))
SITE_IDS = range(40100, 41000)
TIMINGS: list[str] = []  # printed at the end of the run (conftest.py)
_next_site = SITE_IDS.start


def env_settings() -> dict[str, str]:
    """The stack's settings as scripts/stack.sh reads them: the env file, the environment winning."""
    settings = {}
    for line in ENV_FILE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            settings[key] = os.environ.get(key) or value
    return settings


def run_stack(*args: str, timeout: float = 600) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "stack.sh"), *args],
        env={**os.environ, "STACK_ENV": str(ENV_FILE)}, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, f"scripts/stack.sh {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def docker_cli(*args: str, stdin: str | None = None) -> str:
    """The docker command line (classic builder: it never asks a registry for a local base)."""
    done = subprocess.run(
        ["docker", *args], input=stdin, env={**os.environ, "DOCKER_BUILDKIT": "0"}, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def remove_upgrade_images() -> None:
    """The upgrade test's images, unless a container still uses one."""
    listed = docker_cli("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "director/orchestrator")
    upgrades = [ref for ref in listed.split() if ":upgrade-test-" in ref]
    if upgrades:
        subprocess.run(["docker", "image", "rm", *upgrades], capture_output=True)


def prod_stack_exists(name: str) -> bool:
    listed = subprocess.run(["docker", "stack", "ls", "--format", "{{.Name}}"], capture_output=True, text=True)
    return name in listed.stdout.split()


def site_ids() -> range:
    """The ids handed out so far."""
    return range(SITE_IDS.start, _next_site)


def fresh_site_id() -> int:
    global _next_site
    site_id, _next_site = _next_site, _next_site + 1
    assert site_id in SITE_IDS, "the stack tests used up their site ids"
    return site_id


@contextlib.asynccontextmanager
async def connect(
    settings: dict[str, str], state: Path, user: str, password: str
) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection to the stack's broker as `user`: TLS, verified against the stack's CA."""
    url = URL.build(scheme="amqps", host="127.0.0.1", port=int(settings["AMQPS_PORT"]), user=user, password=password)
    context = ssl.create_default_context(cafile=str(state / "tls" / "ca.pem"))
    connection = await aio_pika.connect_robust(url, ssl_context=context)
    try:
        yield connection
    finally:
        await connection.close()


@dataclass
class Prod:
    settings: dict[str, str]
    state: Path
    api: docker.APIClient
    admin: AbstractRobustConnection
    director: Director
    results: Results

    @property
    def name(self) -> str:
        return self.settings["DIRECTOR_STACK"]

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.settings['HTTP_PORT']}"

    @property
    def sites_root(self) -> Path:
        return Path(self.settings["SITES_ROOT"])

    def service(self, name: str) -> dict[str, Any]:
        return self.api.inspect_service(f"{self.name}_{name}")  # type: ignore[no-any-return]

    def containers(self, name: str, *, running: bool = True) -> list[dict[str, Any]]:
        label = f"com.docker.swarm.service.name={self.name}_{name}"
        return self.api.containers(all=not running, filters={"label": label})  # type: ignore[no-any-return]

    def address(self, container: str) -> str:
        """The container's address on the stack's sites network."""
        networks = self.api.inspect_container(container)["NetworkSettings"]["Networks"]
        return str(networks[self.settings["SITES_NETWORK"]]["IPAddress"])

    def exec(self, container: str, *command: str) -> tuple[int, str]:
        run = self.api.exec_create(container, list(command))
        output = self.api.exec_start(run["Id"]).decode(errors="replace")
        return self.api.exec_inspect(run["Id"])["ExitCode"], output

    async def handled(self, event_ids: list[str], timeout: float = 15) -> dict[str, Handling]:
        """Which replica handled each of these events (the log line follows the result by a moment)."""
        found: dict[str, Handling] = {}

        def logged() -> bool:
            nonlocal found
            found = self.handled_so_far()
            return all(i in found for i in event_ids)

        await eventually(lambda: asyncio.to_thread(logged), timeout)
        return found

    def handled_so_far(self) -> dict[str, Handling]:
        """Every event an orchestrator replica of this stack handled, by event id, from the logs of
        its containers (stopped ones too: the swarm keeps them for a while)."""
        found: dict[str, Handling] = {}
        for container in self.containers("orchestrator", running=False):
            logs = self.api.logs(container["Id"], stdout=True, stderr=True).decode(errors="replace")
            for line in logs.splitlines():
                if '"event handled"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                handling = Handling(container["Id"], container["Image"], parse_time(entry["ts"]), entry["outcome"])
                found.setdefault(entry["event_id"], handling)  # the first time it was handled
        return found

    def task_history(self, name: str) -> list[str]:
        """The service's tasks, oldest first: container, state (desired), when, and Swarm's reason
        (a task replaced for failing its health check says so here)."""
        tasks = self.api.tasks(filters={"service": f"{self.name}_{name}"})
        lines = []
        for task in sorted(tasks, key=lambda t: t["CreatedAt"]):
            status = task["Status"]
            container = (status.get("ContainerStatus") or {}).get("ContainerID", "")[:12] or "-"
            lines.append(
                f"{container} {status['State']} (desired {task['DesiredState']}) at {status['Timestamp']}"
                f" {status.get('Err') or status.get('Message', '')}"
            )
        return lines

    def why_gone(self, containers: set[str], name: str) -> dict[str, Any]:
        """What a failed test needs to know of containers that are no longer running: how each
        ended, its last health checks and log lines, and the service's task history."""
        ends: dict[str, Any] = {}
        for container in containers:
            try:
                state = self.api.inspect_container(container)["State"]
                tail = self.api.logs(container, tail=15).decode(errors="replace").splitlines()
            except docker.errors.NotFound:
                ends[container[:12]] = "(removed)"
                continue
            keep = ("Status", "ExitCode", "OOMKilled", "Error", "StartedAt", "FinishedAt")
            ends[container[:12]] = {k: state.get(k) for k in keep}
            ends[container[:12]].update(health=self.health_log(container), log=tail)
        return {"ended": ends, "tasks": self.task_history(name)}

    def health_log(self, container: str) -> list[str]:
        """Docker's last runs of the container's HEALTHCHECK: start, exit code, output."""
        try:
            health = self.api.inspect_container(container)["State"].get("Health") or {}
        except docker.errors.NotFound:
            return ["(the container is gone)"]
        return [f"{r['Start']} {r['ExitCode']} {str(r['Output']).strip()[:200]}" for r in health.get("Log", [])]

    def started_at(self, container: str) -> float:
        return parse_time(self.api.inspect_container(container)["State"]["StartedAt"])

    async def wait_result(self, event: dict[str, Any], timeout: float = 90) -> Any:
        return await self.results.wait_for(event["event_id"], timeout=timeout)


@dataclass
class Handling:
    container: str
    image: str
    at: float
    outcome: str


def parse_time(value: str) -> float:
    """Epoch seconds from Docker's (nanoseconds, Z) or our logs' ISO 8601 times."""
    value = re.sub(r"(\.\d{6})\d*", r"\1", value.replace("Z", "+00:00"))
    return datetime.fromisoformat(value).timestamp()


class Stream:
    """Site events as Director sends them, one every `interval`, over a few sites with versions
    that increase; none needs a container (`serving: false`), so each is handled in milliseconds
    and the stream measures the bus and the replicas, not the sites."""

    def __init__(self, director: Director, sites: int = 6, interval: float = 0.2) -> None:
        self.director = director
        self.site_ids = [fresh_site_id() for _ in range(sites)]
        self.interval = interval
        self.events: list[dict[str, Any]] = []
        self.published_at: dict[str, float] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Stream:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        versions = dict.fromkeys(self.site_ids, 0)
        for site_id in itertools.cycle(self.site_ids):
            if self._stop.is_set():
                return
            versions[site_id] += 1
            version = versions[site_id]
            event = site_event(
                "site.created" if version == 1 else "site.updated", site_id, version, serving=False,
                domains=[f"s{site_id}-{version % 2}.stack.example.com"],
            )  # fmt: skip
            # When it was sent, not when the broker confirmed it: under load a confirm comes a
            # second late, and an event sent before a kill must not count as one sent after.
            sent = time.time()
            await publish_reliably(self.director, event)
            self.events.append(event)
            self.published_at[event["event_id"]] = sent
            await asyncio.sleep(self.interval)

    def ids(self) -> list[str]:
        return [e["event_id"] for e in self.events]


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    TIMINGS.append(f"{what}: {time.monotonic() - started:.1f}s")
