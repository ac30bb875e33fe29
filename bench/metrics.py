"""Metrics (issue 32): one collector pass over a thousand sites' cgroups, and the machine's idle
cost per site with metrics on against off at the same number of sites, in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import Bench, cpu_window, log

from orchestrator.metrics.cgroups import Hierarchy
from orchestrator.metrics.collector import Collector
from orchestrator.metrics.samples import NodeSample
from orchestrator.swarm.containers import Task

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")


class _Engine:
    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks

    async def identity(self) -> tuple[str, str]:
        return "bench-node", "bench"

    async def site_tasks(self) -> list[Task]:
        return self.tasks


@contextlib.contextmanager
def _cgroups(count: int) -> Iterator[list[Task]]:
    """`count` real cgroups, as a cgroupfs engine with the parent `orchestrator-bench` makes them,
    each holding a sleeping process (its network is read through it)."""
    hierarchy = Hierarchy(CGROUP_ROOT)
    bases = [CGROUP_ROOT] if hierarchy.v2 else [CGROUP_ROOT / c for c in V1_CONTROLLERS]
    parent = f"orchestrator-bench-{os.getpid()}"
    children: list[subprocess.Popen[bytes]] = []
    tasks: list[Task] = []
    try:
        for base in bases:
            (base / parent).mkdir()
            if hierarchy.v2:
                (base / parent / "cgroup.subtree_control").write_text("+cpu +memory +io +pids")
        for n in range(count):
            container_id = f"{n:064x}"
            child = subprocess.Popen(["sleep", "3600"])
            children.append(child)
            for base in bases:
                (base / parent / container_id).mkdir()
                (base / parent / container_id / "cgroup.procs").write_text(str(child.pid))
            tasks.append(Task(container_id, f"site_{n + 1:04d}.1.x", f"site_{n + 1:04d}", created=0))
        yield tasks
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()
        for base in bases:
            for attempt in range(100):
                with contextlib.suppress(FileNotFoundError):
                    for directory in (base / parent).iterdir():
                        if directory.is_dir():
                            with contextlib.suppress(OSError):
                                directory.rmdir()
                with contextlib.suppress(OSError):
                    (base / parent).rmdir()
                if not (base / parent).exists():
                    break
                time.sleep(0.05 * (attempt + 1) / 10)


async def collection_pass(count: int = 1000, passes: int = 5) -> dict[str, Any]:
    """Wall and CPU time of a collector pass over `count` real cgroups (the first pass, which finds
    each cgroup and reads its limits, apart from the steady ones)."""
    log(f"metrics: a collector pass over {count} cgroups")

    async def send(sample: NodeSample) -> bool:
        return True

    with _cgroups(count) as tasks, tempfile.TemporaryDirectory() as root:
        collector = Collector(_Engine(tasks), Hierarchy(CGROUP_ROOT), send, period=60, sites_root=Path(root))
        walls, cpus = [], []
        for n in range(passes + 1):
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            samples = await collector.collect(60.0 * (n + 1))
            walls.append(time.perf_counter() - wall0)
            cpus.append(_cpu_seconds() - cpu0)
        sites = sum(len(s.sites) for s in samples)
    first_wall, first_cpu = walls.pop(0), cpus.pop(0)
    steady_cpu = statistics.median(cpus)
    return {
        "sites": count,
        "sites_in_sample": sites,
        "first_pass_seconds": round(first_wall, 3),
        "first_pass_cpu_seconds": round(first_cpu, 3),
        "pass_seconds_median": round(statistics.median(walls), 3),
        "pass_cpu_seconds_median": round(steady_cpu, 3),
        "cpu_us_per_site": round(steady_cpu / count * 1e6, 1),
        # What a node of `count` sites spends on its collector at the default period.
        "millicores_at_60s": round(steady_cpu / 60 * 1000, 2),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle_on_off(bench: Bench, level: int, baseline: dict[str, float], window: float) -> dict[str, Any]:
    """With `level` idle sites up: the machine's CPU with metrics on (the running orchestrator's
    default), then off (restarted with METRICS_SECONDS=0), then on again (restarted), per site
    against `baseline` (no sites). On is measured twice around off, so a drift of the machine's
    load shows as a difference between the two. The metrics' own cost is what the processes doing
    the work (the orchestrator: collector, Traefik scrape, merge, publish; and the broker) use on
    against off; the bound is issue 19's (Docker + Traefik per site, as the idle rows) plus it."""
    readings: dict[str, dict[str, float]] = {}
    for name, seconds in (("on", "60"), ("off", "0"), ("on_again", "60")):
        if name != "on":
            await bench.restart(metrics_seconds=seconds)
        log(f"metrics {name}: {level} sites; settling 70 s, then measuring {window:.0f} s")
        await asyncio.sleep(70)
        readings[name] = await cpu_window(window, orchestrator=bench.process.proc.pid)  # type: ignore[union-attr]
    per_site = {k: round((r["machine_mc"] - baseline["machine_mc"]) / level, 2) for k, r in readings.items()}
    own = {k: round(r["orchestrator_mc"] + r["broker_mc"], 1) for k, r in readings.items()}
    cost = (statistics.mean([own["on"], own["on_again"]]) - own["off"]) / level
    daemons = ("docker_mc", "traefik_mc")
    bound = {k: round(sum(readings[k][d] - baseline[d] for d in daemons) / level + cost, 2) for k in ("on", "on_again")}
    return {
        "readings_mc": readings,
        "machine_mc_per_site": per_site,
        "machine_cost_mc_per_site": round(statistics.mean([per_site["on"], per_site["on_again"]]) - per_site["off"], 2),
        "orchestrator_and_broker_mc": own,
        "metrics_cost_mc_per_site": round(cost, 3),
        "docker_traefik_metrics_mc_per_site": bound,
    }
