"""Scale: what idle, healthy sites cost the machine, and the orchestrator's own costs with a
thousand sites (start-up, status, a drift survey, one deploy, memory, Traefik's provider load)."""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from common import API, FLEET_SITE, TRAEFIK, Bench, cpu_window, host, log, page, rss_mb, served_now

from harness.director import site_event, write_site

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


async def idle_levels(bench: Bench, levels: list[int], window: float) -> dict[str, Any]:
    """Machine CPU with N idle, healthy, serving sites, minus with none, per site."""
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
    async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
        served = sum([await served_now(client, host(s), page(s)) for s in sites])
    base = readings[levels[0]]
    per_site = {str(n): {k: round((r[k] - base[k]) / n, 2) for k in r} for n, r in readings.items() if n}
    return {"readings_mc": {str(n): r for n, r in readings.items()}, "per_site_mc": per_site,
            "served_after": f"{served}/{len(sites)}"}  # fmt: skip


def fill(count: int, first: int) -> None:
    """`count` managed, not-serving site services created straight through the SDK (as if the
    orchestrator had applied them long ago), so a thousand-site fleet takes minutes, not an hour."""
    from orchestrator.config import Settings
    from orchestrator.sites.admission import admit
    from orchestrator.sites.spec import desired_service
    from orchestrator.slices import Admission, SiteRuntime
    from orchestrator.swarm.mapping import to_docker
    from orchestrator_contract.sites import SiteCreated

    settings = Settings()
    admission, runtime = Admission.of(settings), SiteRuntime.of(settings)

    def create(site_id: int) -> None:
        event = SiteCreated.model_validate(
            site_event("site.created", site_id, 1, domains=[host(site_id)], serving=False)
        )
        spec = desired_service(admit(event.site, admission), 1, runtime, settings.sites_root / f"site_{site_id:04d}")
        API.create_service(name=spec.name, **to_docker(spec))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(first, first + count)))


def timed_cli(bench: Bench, *args: str) -> float:
    """Seconds an operator waits for `orchestrator ARGS...`."""
    started = time.monotonic()
    done = bench.process.cli(*args, timeout=600)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


async def fleet(bench: Bench, serving: int, total: int, window: float) -> dict[str, Any]:
    """With `serving` sites up already, fill the fleet to `total` and time what grows with it."""
    before = {"status_seconds": round(timed_cli(bench, "status", "--json"), 2),
              "drift_survey_seconds": round(timed_cli(bench, "reconcile", "--dry-run"), 2)}  # fmt: skip
    log(f"fleet: {total - serving} more not-serving sites straight through the SDK")
    await asyncio.to_thread(fill, total - serving, FLEET_SITE + serving)
    await asyncio.sleep(20)
    log("fleet: restart of the orchestrator (start-up and takeover)")
    startup = await bench.restart()
    await asyncio.sleep(10)
    status = timed_cli(bench, "status", "--json")
    drift = timed_cli(bench, "reconcile", "--dry-run")
    deploys = []
    for i in range(3):
        site_id = FLEET_SITE + total + i
        write_site(bench.root, site_id, page=page(site_id))
        event = site_event("site.created", site_id, 1, domains=[host(site_id)])
        started = time.monotonic()
        await bench.director.publish(event)
        assert (await bench.results.wait_for(event["event_id"], timeout=300)).type == "site.deployed"
        deploys.append(time.monotonic() - started)
    log(f"fleet: Traefik's provider load with {total} services, {window:.0f} s")
    load = await cpu_window(window)
    return {
        "sites": total, "serving": serving,
        "startup_seconds": round(startup, 2),
        "status_seconds": round(status, 2),
        "drift_survey_seconds": round(drift, 2),
        "deploy_seconds_median": round(statistics.median(deploys), 2),
        "orchestrator_rss_mb": round(rss_mb(bench.process.proc.pid), 1),  # type: ignore[union-attr]
        "cpu_mc": load,
        f"at_{serving}_sites": before,
    }  # fmt: skip
