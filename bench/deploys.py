"""Deploys: a burst against the swarm's own limit, the broken-site corpus, redeploys under load, and
how soon a site that went down is reported (and again once it is back)."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from common import API, TRAEFIK, Bench, host, log, page, served_now, until_served, wipe

from harness.director import site_event, write_site
from orchestrator.config import Settings
from orchestrator.sites.admission import admit
from orchestrator.sites.service import ServiceSpec
from orchestrator.sites.spec import desired_service
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.swarm.mapping import to_docker
from orchestrator_contract.sites import SiteCreated

# --- burst ------------------------------------------------------------------------------------------


def floor_specs(sites: list[int], root: Path) -> list[ServiceSpec]:
    """The services the orchestrator would create, without the health check: nothing gates them
    but the swarm itself, so "created in parallel until served" is the physical floor."""
    settings = Settings(sites_root=root)
    specs = []
    for site_id in sites:
        site_dir = write_site(root, site_id, page=page(site_id))
        Path(site_dir).chmod(0o755)
        event = SiteCreated.model_validate(site_event("site.created", site_id, 1, domains=[host(site_id)]))
        spec = desired_service(admit(event.site, Admission.of(settings)), 1, SiteRuntime.of(settings), site_dir)
        specs.append(dataclasses.replace(spec, healthcheck=None))
    return specs


async def burst_floor(sites: list[int], root: Path) -> float:
    specs = floor_specs(sites, root)
    started = time.monotonic()
    with ThreadPoolExecutor(len(specs)) as pool:
        for future in [pool.submit(API.create_service, name=s.name, **to_docker(s)) for s in specs]:
            future.result()
    async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
        await asyncio.gather(*(until_served(client, host(i), page(i)) for i in sites))
    return time.monotonic() - started


async def burst(bench: Bench, sites: list[int]) -> dict[str, Any]:
    """`site.created` for every site at once, until every `site.deployed`; how many of them the
    site already answered through Traefik when its result arrived."""
    events = []
    for site_id in sites:
        write_site(bench.root, site_id, page=page(site_id))
        events.append(site_event("site.created", site_id, 1, domains=[host(site_id)]))
    async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:

        async def one(event: dict[str, Any]) -> bool:
            site_id = event["site"]["id"]
            result = await bench.results.wait_for(event["event_id"], timeout=600)
            return result.type == "site.deployed" and await served_now(client, host(site_id), page(site_id))

        waiting = [asyncio.create_task(one(e)) for e in events]
        started = time.monotonic()
        for event in events:
            await bench.director.publish(event)
        outcome = await asyncio.gather(*waiting)
    return {"seconds": round(time.monotonic() - started, 2), "served_at_result": sum(outcome), "sites": len(sites)}


async def burst_section(bench: Bench, sites: list[int]) -> dict[str, Any]:
    log(f"burst, the floor: {len(sites)} equivalent services without a health check, created in parallel")
    wipe()
    floor = await burst_floor(sites, bench.root)
    wipe()
    log(f"burst through the orchestrator: {len(sites)} site.created")
    ours = await burst(bench, sites)
    return ours | {"floor_seconds": round(floor, 2), "ratio_to_floor": round(ours["seconds"] / floor, 2)}


# --- truth: the broken-site corpus ------------------------------------------------------------------

CORPUS = {
    "exits at once": ("run_script_failed", 'echo "cannot start" >&2\nexit 1\n', None),
    "crashes 4 s after start": (
        "run_script_failed", 'httpd -f -p "$PORT" -h /site/public &\nsleep 4\nkill $!\nexit 3\n', None),
    "listens on 8080": ("not_listening", "exec httpd -f -p 8080 -h /site/public\n", None),
    "no run.sh": ("no_run_script", None, None),
    "missing image": ("image_not_found", 'exec httpd -f -p "$PORT"\n', {"name": "no-such-image:1", "custom": True}),
}  # fmt: skip


async def corpus(bench: Bench, first: int) -> dict[str, Any]:
    events = {}
    for offset, (label, (_, script, image)) in enumerate(CORPUS.items()):
        site_id = first + offset
        site_dir = write_site(bench.root, site_id, page="broken", run_sh=script is not None)
        if script is not None:
            (site_dir / "run.sh").write_text("#!/bin/sh\n" + script)
        events[label] = site_event("site.created", site_id, 1, image=image)
        await bench.director.publish(events[label])
    cases, false_successes = {}, 0
    for label, (code, _, _) in CORPUS.items():
        result = await bench.results.wait_for(events[label]["event_id"], timeout=300)
        false_successes += result.type == "site.deployed"
        cases[label] = {"expected": code, "got": str(result.error.code if result.error else result.type)}
    return {"false_successes": false_successes, "cases": cases}


# --- redeploys under a request loop ------------------------------------------------------------------


async def redeploys(bench: Bench, site_id: int, count: int = 10) -> dict[str, Any]:
    name = host(site_id)
    write_site(bench.root, site_id, page=f"always up {site_id}")
    first = site_event("site.created", site_id, 1, domains=[name])
    await bench.director.publish(first)
    assert (await bench.results.wait_for(first["event_id"], timeout=180)).type == "site.deployed"
    outcomes: dict[str, int] = {}
    stop = asyncio.Event()

    async def loop() -> None:
        async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = await client.get("/", headers={"Host": name})
                    ok = response.status_code == 200 and f"always up {site_id}" in response.text
                    key = "ok" if ok else str(response.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                outcomes[key] = outcomes.get(key, 0) + 1
                await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    durations = []
    for version in range(2, count + 2):
        event = site_event("site.updated", site_id, version, domains=[name], env={"RELEASE": str(version)})
        started = time.monotonic()
        await bench.director.publish(event)
        result = await bench.results.wait_for(event["event_id"], timeout=180)
        assert result.type == "site.deployed", result
        durations.append(time.monotonic() - started)
    await asyncio.sleep(2)
    stop.set()
    await task
    failed = sum(n for k, n in outcomes.items() if k != "ok")
    return {"requests": sum(outcomes.values()), "failed": failed, "outcomes": outcomes,
            "median_redeploy_seconds": round(statistics.median(durations), 2)}  # fmt: skip


# --- health: a site that goes down, and comes back ----------------------------------------------------


async def health_detection(bench: Bench, site_id: int) -> dict[str, float]:
    """Kill a deployed site's server from inside (its process exits, as a crash would): seconds
    until `site.health` says `down`, and until it says `healthy` again after Swarm restarted it."""
    name = f"site_{site_id:04d}"
    (container,) = API.containers(filters={"label": f"com.docker.swarm.service.name={name}"})
    before = len([h for h in bench.results.health if h.site_id == site_id])
    exec_id = API.exec_create(container["Id"], ["sh", "-c", "kill $(pidof httpd)"])
    started = time.monotonic()
    API.exec_start(exec_id)
    down = await bench.results.wait_health(site_id, before + 1, timeout=120)
    down_after = time.monotonic() - started
    healthy = await bench.results.wait_health(site_id, before + 2, timeout=300)
    assert down[-1].status == "down" and healthy[-1].status == "healthy", (down, healthy)
    return {"down_after_seconds": round(down_after, 2), "healthy_after_seconds": round(time.monotonic() - started, 2)}
