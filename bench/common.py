"""What every benchmark section shares: the orchestrator under test with its Director and result
listener, Docker, the wipe of the benchmark's sites, CPU and memory readings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx

from harness.broker import connected
from harness.director import Director, Results
from harness.process import OrchestratorProcess
from harness.stack import ROOT, TRAEFIK, default_images, fresh_vhost, scratch_sites_root

VHOST = "orchestrator-bench"
FIRST_SITE = 8000  # 8000-8999: the benchmark's sites; 200000 on: the thousand-site fleet
FLEET_SITE = 200_000
FLEET_FILL = 100_000  # the fleet's ids: FLEET_SITE up to this many more (single deploys past them)
API = docker.APIClient(version="auto")
MANAGED = {"label": "com.director.managed-by=orchestrator"}
TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def host(site_id: int) -> str:
    return f"b{site_id}.bench.example.com"


def page(site_id: int) -> str:
    return f"bench page {site_id}"


def bench_site(site_id: int) -> bool:
    return FIRST_SITE <= site_id < FIRST_SITE + 1000 or site_id >= FLEET_SITE


def wipe(keep_fleet: bool = False) -> None:
    """Every service, tombstone and container of the benchmark's sites, removed in parallel;
    `keep_fleet`: but the fleet's not-serving services, for the next run to reuse."""

    def ours(spec: dict[str, Any]) -> bool:
        value = (spec.get("Labels") or {}).get("com.director.site-id", "")
        if not (value.isdigit() and bench_site(int(value))):
            return False
        idle = spec.get("Mode", {}).get("Replicated", {}).get("Replicas") == 0
        return not (keep_fleet and idle and FLEET_SITE <= int(value) < FLEET_SITE + FLEET_FILL)

    services = [s["ID"] for s in API.services(filters=MANAGED) if ours(s["Spec"])]
    services += [s["ID"] for s in API.services() if s["Spec"]["Name"].startswith("bench_")]
    configs = [c["ID"] for c in API.configs(filters=MANAGED) if ours(c["Spec"])]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: _quietly(API.remove_service, i), services))
        list(pool.map(lambda i: _quietly(API.remove_config, i), configs))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(_bench_task(c) for c in API.containers(all=True)):
        time.sleep(1)


def _bench_task(container: dict[str, Any]) -> bool:
    name = (container.get("Labels") or {}).get("com.docker.swarm.service.name", "")
    return name.startswith("bench_") or (name.startswith("site_") and name[5:].isdigit() and bench_site(int(name[5:])))


def _quietly(remove: Any, ident: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        remove(ident)


def bench_env(root: Path, **overrides: str) -> dict[str, str]:
    """Production defaults, except where the benchmark's own broker and sites root live, and the
    default images pinned as `make up` pushed them."""
    env = {
        **default_images(),
        "ORCHESTRATOR_AMQP_URL": f"amqp://orchestrator:orchestrator@127.0.0.1:5672/{VHOST}",
        "ORCHESTRATOR_REPLAY_AMQP_URL": f"amqp://director:director@127.0.0.1:5672/{VHOST}",
        "ORCHESTRATOR_SITES_ROOT": str(root),
        "ORCHESTRATOR_TRAEFIK_URL": TRAEFIK,
        "ORCHESTRATOR_DEPLOYMENT": "bench",
        "ORCHESTRATOR_HEARTBEAT_FILE": str(root.parent / "heartbeat"),
        "ORCHESTRATOR_DRIFT_REPORT_SECONDS": "0",
    }
    env.update({f"ORCHESTRATOR_{k.upper()}": v for k, v in overrides.items()})
    return env


@dataclass
class Bench:
    root: Path
    process: OrchestratorProcess
    director: Director
    results: Results

    async def restart(self, **overrides: str) -> float:
        """Stop the orchestrator and start it again (with `overrides`); seconds until consuming."""
        self.process.stop()
        self.process = OrchestratorProcess(bench_env(self.root, **overrides), self.process.log_path)
        started = time.monotonic()
        self.process.start()
        await self.process.wait_consuming(timeout=300)
        return time.monotonic() - started


@contextlib.asynccontextmanager
async def bench_running(**overrides: str) -> AsyncIterator[Bench]:
    # A sites root mounted nosuid,nodev, as production's must be (the orchestrator refuses others).
    with fresh_vhost(VHOST), scratch_sites_root("bench") as root:
        process = OrchestratorProcess(bench_env(root, **overrides), root.parent / "orchestrator.log")
        bench: Bench | None = None
        process.start()
        try:
            await process.wait_consuming(timeout=120)
            async with connected("director", VHOST) as listening, connected("director", VHOST) as publishing:
                results = Results(listening)
                await results.start()
                director = Director(publishing)
                await director.start()
                bench = Bench(root, process, director, results)
                yield bench
        finally:
            # The one running now: a section may have restarted it (`Bench.restart`).
            running = bench.process if bench is not None else process
            if running.alive:
                running.stop()


def traefik_refresh(seconds: int, docker_socket: Path | None = None) -> None:
    """Run the local stack's Traefik with this swarm-provider refresh, reading the swarm through
    `docker_socket` (default: Docker's own); stack-up recreates it."""
    env = {**os.environ, "TRAEFIK_REFRESH_SECONDS": str(seconds)}
    if docker_socket is not None:
        env["TRAEFIK_DOCKER_SOCKET"] = str(docker_socket)
    subprocess.run(["bash", str(ROOT / "scripts" / "stack-up.sh")], env=env, check=True, capture_output=True)


@contextlib.contextmanager
def traefik_through_proxy(folder: Path, refresh: int) -> Iterator[subprocess.Popen[bytes]]:
    """Production's way for the local Traefik: the swarm read through `orchestrator docker-proxy`
    (listening on a unix socket the Traefik container mounts); Docker's own socket again after."""
    socket = folder / "docker-proxy.sock"
    socket.unlink(missing_ok=True)
    with (folder / "docker-proxy.log").open("ab") as out:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "docker-proxy", "--listen", f"unix:{socket}"],
            cwd=ROOT, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if proxy.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the docker proxy did not start")
            time.sleep(0.1)
        traefik_refresh(refresh, socket)
        yield proxy
    finally:
        traefik_refresh(refresh)
        proxy.terminate()
        proxy.wait(10)


def peak_rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM:") / 1024


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS:") / 1024


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far."""
    parts = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(parts[11]) + int(parts[12])) / TICKS


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


async def served_now(client: httpx.AsyncClient, host_name: str, text: str) -> bool:
    try:
        response = await client.get("/", headers={"Host": host_name})
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and text in response.text


async def until_served(client: httpx.AsyncClient, host_name: str, text: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not await served_now(client, host_name, text):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host_name} not served")
        await asyncio.sleep(0.05)


# --- CPU ---------------------------------------------------------------------------------------------

DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "traefik")
BROKER = "beam.smp"


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _process_ticks(names: Iterable[str]) -> dict[str, int]:
    """utime+stime (+ reaped children's: a runc exec is a shim's child) per process name."""
    wanted = set(names)
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name in wanted:
            parts = stat[stat.rindex(")") + 2 :].split()
            found[name] = found.get(name, 0) + sum(int(v) for v in parts[11:15])
    return found


async def cpu_window(seconds: float, orchestrator: int | None = None) -> dict[str, float]:
    """Millicores over `seconds`: the whole machine, and the container daemons and Traefik; with
    `orchestrator` (its pid), that process and the broker (RabbitMQ's Erlang VM) too."""
    names = (*DAEMONS, BROKER)
    busy0, total0 = _machine_ticks()
    procs0, own0 = _process_ticks(names), cpu_seconds(orchestrator) if orchestrator else 0.0
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    busy1, total1 = _machine_ticks()
    procs1, own1 = _process_ticks(names), cpu_seconds(orchestrator) if orchestrator else 0.0
    cores = os.cpu_count() or 1
    machine = (busy1 - busy0) / (total1 - total0) * cores * 1000
    used = {name: (procs1.get(name, 0) - procs0.get(name, 0)) / TICKS / elapsed * 1000 for name in names}
    reading = {
        "machine_mc": round(machine, 1),
        "docker_mc": round(sum(v for k, v in used.items() if k not in ("traefik", BROKER)), 1),
        "traefik_mc": round(used["traefik"], 1),
    }
    if orchestrator is not None:
        reading["orchestrator_mc"] = round((own1 - own0) / elapsed * 1000, 1)
        reading["broker_mc"] = round(used[BROKER], 1)
    return reading
