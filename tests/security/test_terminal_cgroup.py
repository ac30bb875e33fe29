"""Terminals are bounded together on their node (round four, item 7): each session container got
its site's CPU and memory limits again, beside the site's task, so three CPU-bound shells per site
took up to three times the site's share of the orchestrator's node. Now every session runs under
one cgroup (`TERMINALS_CGROUP`) holding `TERMINALS_MAX_CPUS`, `TERMINALS_MAX_MEMORY` and
`TERMINALS_MAX_PIDS` for all of them together: three busy-looping shells of a 1-CPU site use at
most the bound between them, measured by the kernel's own CPU accounting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
from support import (
    SESSION_LABEL,
    Director,
    Results,
    Running,
    deploy,
    scope,
    site_event,
    stack_running,
    terminal_bus,
    write_site,
)

CAP_CPUS = 0.3
CAP_MEMORY = 192 * 2**20
CGROUP = f"director-terminals-{scope.NAME}"
ROOT = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    settings = {"terminals_cgroup": CGROUP, "terminals_max_cpus": str(CAP_CPUS), "terminals_max_memory": "192Mi"}
    try:
        async with stack_running("terminal-cap", tmp_path_factory.mktemp("cap-logs"), **settings) as running:
            yield running
    finally:
        for path in (ROOT / CGROUP, *(ROOT / sub / CGROUP for sub in ("cpu", "cpuacct", "memory", "pids"))):
            with contextlib.suppress(OSError):  # gone already, or a container still in it
                for child in sorted(path.glob("*/"), reverse=True):  # leftovers of removed containers
                    child.rmdir()
                path.rmdir()


def cpu_seconds(api: docker.APIClient, container_id: str) -> float:
    """The CPU a container used so far, from its cgroup (v1 cpuacct or v2 cpu.stat)."""
    parent = (api.inspect_container(container_id)["HostConfig"].get("CgroupParent") or "/docker").strip("/")
    if (ROOT / "cgroup.controllers").exists():
        stat = dict(line.split() for line in (ROOT / parent / container_id / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6
    return int((ROOT / "cpuacct" / parent / container_id / "cpuacct.usage").read_text()) / 1e9


async def test_three_busy_shells_of_a_site_share_the_terminals_bound(
    stack: Running, director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    """The stack here is this module's own: its orchestrator bounds terminals at CAP_CPUS."""
    write_site(sites_root, site_id, page="busy")
    event = site_event("site.created", site_id, 1, resources={"cpus": 1, "memory": "64Mi"})
    assert (await deploy(director, results, event)).type == "site.deployed"
    async with terminal_bus(stack.vhost) as bus:
        sessions = [await bus.session() for _ in range(3)]
        for session in sessions:
            await session.send("open", site_id=site_id, cols=80, rows=24)
            await session.wait_type("opened", timeout=60)
        for session in sessions:
            await session.type("echo burning; while :; do :; done\n")
            await session.wait_output(b"burning\r\n")
        ids = [c["Id"] for c in api.containers(filters={"label": [SESSION_LABEL, f"com.director.site-id={site_id}"]})]
        assert len(ids) == 3
        await asyncio.sleep(1)  # past the loops' start
        before, started = sum(cpu_seconds(api, i) for i in ids), time.monotonic()
        await asyncio.sleep(4)
        used = (sum(cpu_seconds(api, i) for i in ids) - before) / (time.monotonic() - started)
        for session in sessions:
            await session.send("close")
            await session.wait_type("closed")
    # Three loops of a 1-CPU site: up to 3 CPUs (all this machine's) without the bound.
    assert used <= CAP_CPUS * 1.15 + 0.02, f"{used:.2f} CPUs used by three shells; the bound is {CAP_CPUS}"
    assert used >= CAP_CPUS * 0.3, f"{used:.2f} CPUs: the shells did not run"  # the measure measures
    if not (ROOT / "cgroup.controllers").exists():  # and the bound is what the settings say
        assert (ROOT / "memory" / CGROUP / "memory.limit_in_bytes").read_text().strip() == str(CAP_MEMORY)
        assert (ROOT / "cpu" / CGROUP / "cpu.cfs_quota_us").read_text().strip() == str(round(CAP_CPUS * 100_000))
