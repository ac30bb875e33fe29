"""Scale: what idle, healthy sites cost the machine, and the orchestrator's own costs with
thousands of sites (start-up, takeover, status, a drift survey, one deploy, memory, Traefik's
provider load)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import timeline
from common import (
    API,
    FLEET_FILL,
    FLEET_SITE,
    MANAGED,
    TRAEFIK,
    Bench,
    bench_env,
    cpu_seconds,
    cpu_window,
    host,
    log,
    page,
    rss_mb,
    served_now,
)

from harness.director import site_event, write_site
from harness.process import OrchestratorProcess

# Single deploys of the fleet levels take site ids from here on (past the largest fleet).
LEVEL_SITES = FLEET_FILL

SETTLE_SECONDS = 75  # past one full rest of a steady task's health probe (60 s), and Traefik's refresh


async def deploy_all(bench: Bench, sites: list[int], *, serving: bool = True, timeout: float = 1200) -> None:
    """site.created for each (in bursts of 50), until every result; all must be deployed."""
    for start in range(0, len(sites), 50):
        events = []
        for site_id in sites[start : start + 50]:
            if serving:
                write_site(bench.root, site_id, page=page(site_id))
            events.append(site_event("site.created", site_id, 1, domains=[host(site_id)], serving=serving))
        for event in events:
            await bench.director.publish(event)
        for event in events:
            result = await bench.results.wait_for(event["event_id"], timeout=timeout)
            assert result.type == "site.deployed", result


async def idle_levels(
    bench: Bench,
    levels: list[int],
    window: float,
    after: Callable[[int, dict[str, float]], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Machine CPU with N idle, healthy, serving sites, minus with none, per site; `after(N,
    reading)` once each level is measured."""
    sites: list[int] = []
    readings: dict[int, dict[str, float]] = {}
    for level in levels:
        new = [FLEET_SITE + i for i in range(len(sites), level)]
        if new:
            log(f"idle: deploying {len(new)} more sites (to {level})")
            await deploy_all(bench, new)
            sites += new
        log(f"idle: {level} sites; settling {SETTLE_SECONDS} s, then measuring {window:.0f} s")
        await asyncio.sleep(SETTLE_SECONDS if level else 10)
        readings[level] = await cpu_window(window)
        if after is not None:
            await after(level, readings[level])
    async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
        served = sum([await served_now(client, host(s), page(s)) for s in sites])
    base = readings[levels[0]]
    per_site = {str(n): {k: round((r[k] - base[k]) / n, 2) for k in r} for n, r in readings.items() if n}
    return {"readings_mc": {str(n): r for n, r in readings.items()}, "per_site_mc": per_site,
            "served_after": f"{served}/{len(sites)}"}  # fmt: skip


def fill(count: int, first: int) -> int:
    """`count` managed, not-serving site services from `first` on, created straight through the
    SDK (as if the orchestrator had applied them long ago), so a fleet of thousands takes minutes,
    not hours. Resumable: what a previous run left of them is kept. How many were created."""
    from orchestrator.config import Settings
    from orchestrator.sites.admission import admit
    from orchestrator.sites.spec import desired_service
    from orchestrator.slices import Admission, SiteRuntime
    from orchestrator.swarm.mapping import to_docker
    from orchestrator_contract.sites import SiteCreated

    settings = Settings()
    admission, runtime = Admission.of(settings), SiteRuntime.of(settings)
    there = {s["Spec"]["Name"] for s in API.services(filters=MANAGED)}
    wanted = [i for i in range(first, first + count) if f"site_{i:04d}" not in there]

    def create(site_id: int) -> None:
        event = SiteCreated.model_validate(
            site_event("site.created", site_id, 1, domains=[host(site_id)], serving=False)
        )
        spec = desired_service(admit(event.site, admission), 1, runtime, settings.sites_root / f"site_{site_id:04d}")
        API.create_service(name=spec.name, **to_docker(spec))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, wanted))
    return len(wanted)


def timed_cli(bench: Bench, *args: str) -> float:
    """Seconds an operator waits for `orchestrator ARGS...`."""
    started = time.monotonic()
    done = bench.process.cli(*args, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: drift found (dry runs)
    return time.monotonic() - started


async def takeover(bench: Bench, site_id: int) -> float:
    """A standby replica started beside the active one, the active killed (SIGKILL): seconds from
    the kill until the standby has answered an event (a redelivered one of a deployed site)."""
    standby = OrchestratorProcess(bench_env(bench.root), bench.root.parent / "standby.log")
    standby.start()
    await standby.wait_consuming(timeout=300)
    await asyncio.sleep(2)
    event = site_event("site.created", site_id, 1, domains=[host(site_id)])
    started = time.monotonic()
    bench.process.kill()
    await bench.director.publish(event)
    result = await bench.results.wait_for(event["event_id"], timeout=300)
    seconds = time.monotonic() - started
    assert result.type == "site.deployed", result
    bench.process = standby
    return seconds


async def fleet(
    bench: Bench, serving: int, levels: list[int], window: float, proxy_pid: int | None = None
) -> dict[str, Any]:
    """With `serving` sites up already, fill the fleet to each of `levels` in turn and time what
    grows with it: start-up, takeover, `status`, a drift survey, one deploy against its floor
    (timeline.one_site), the orchestrator's RSS, the machine's CPU (Traefik's polling included)."""
    before = {"status_seconds": round(timed_cli(bench, "status", "--json"), 2),
              "drift_survey_seconds": round(timed_cli(bench, "reconcile", "--dry-run"), 2)}  # fmt: skip
    report: dict[str, Any] = {"serving": serving, f"at_{serving}_sites": before, "levels": {}}
    deploys: dict[str, Any] = {}
    probe_site = FLEET_SITE  # deployed and serving since the idle section
    for total in levels:
        log(f"fleet: filling to {total} sites ({total - serving} not serving) straight through the SDK")
        started = time.monotonic()
        created = await asyncio.to_thread(fill, total - serving, FLEET_SITE + serving)
        filled = time.monotonic() - started
        log(f"fleet: {created} services created in {filled:.0f} s; settling")
        await asyncio.sleep(20)
        log(f"fleet: {total} sites: restart of the orchestrator (start-up), then a takeover")
        startup = await bench.restart()
        await asyncio.sleep(5)
        taken_over = await takeover(bench, probe_site)
        await asyncio.sleep(5)
        status = timed_cli(bench, "status", "--json")
        drift = timed_cli(bench, "reconcile", "--dry-run")
        deploys[str(total)] = await timeline.one_site(bench, FLEET_SITE + LEVEL_SITES + total, total)
        log(f"fleet: Traefik's provider load with {total} services, {window:.0f} s")
        proxy_before = cpu_seconds(proxy_pid) if proxy_pid else 0.0
        load = await cpu_window(window)
        if proxy_pid:  # production's docker-proxy between Traefik and Docker
            load["docker_proxy_mc"] = round((cpu_seconds(proxy_pid) - proxy_before) / window * 1000, 1)
        report["levels"][str(total)] = {
            "sites": total,
            "fill_seconds": round(filled, 1),
            "services_created": created,
            "startup_seconds": round(startup, 2),
            "takeover_seconds": round(taken_over, 2),
            "status_seconds": round(status, 2),
            "drift_survey_seconds": round(drift, 2),
            "deploy_seconds_median": deploys[str(total)]["seconds_median"],
            "orchestrator_rss_mb": round(rss_mb(bench.process.proc.pid), 1),  # type: ignore[union-attr]
            "cpu_mc": load,
        }
    report["deploys"] = deploys
    return report
