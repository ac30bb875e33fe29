"""One new site, event → `site.deployed`, with where every second goes: Docker's events (the
service created, its container started and turned healthy), the first answer through Traefik
(asked every 20 ms), the result; against the floor, the same service without a health check
created with the SDK until served through Traefik, in the same run, and the stability window."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import docker.errors
import httpx
from common import API, TRAEFIK, Bench, host, log, page, served_now

from harness.director import site_event, write_site
from orchestrator.config import Settings
from orchestrator.sites.admission import admit
from orchestrator.sites.spec import desired_service
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.swarm.mapping import to_docker
from orchestrator_contract.sites import SiteCreated

SERVICE_NAME = "com.docker.swarm.service.name"
MILESTONES = ("created", "started", "healthy", "served", "deployed")


class DockerEvents:
    """Docker's service and container events while it is open, with their times (epoch seconds)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str, str]] = []  # (time, type, action, service name)
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DockerEvents:
        self._stream = API.events(decode=True, filters={"type": ["service", "container"]})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stream.close()
        if self._thread is not None:
            self._thread.join(5)

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed under the reader
            for event in self._stream:
                attributes = event.get("Actor", {}).get("Attributes", {})
                name = attributes.get(SERVICE_NAME) or attributes.get("name", "")
                self.seen.append((event["timeNano"] / 1e9, event["Type"], event["Action"], name))

    def first(self, name: str, kind: str, action: str) -> float | None:
        return next((t for t, k, a, n in self.seen if n == name and k == kind and a.startswith(action)), None)


def _spec(site_id: int, root: Path, healthcheck: bool) -> Any:
    settings = Settings(sites_root=root)
    site_dir = write_site(root, site_id, page=page(site_id))
    site_dir.chmod(0o755)
    event = SiteCreated.model_validate(site_event("site.created", site_id, 1, domains=[host(site_id)]))
    spec = desired_service(admit(event.site, Admission.of(settings)), 1, SiteRuntime.of(settings), site_dir)
    return spec if healthcheck else dataclasses.replace(spec, healthcheck=None)


async def _first_served(client: httpx.AsyncClient, site_id: int, deadline: float) -> float:
    while not await served_now(client, host(site_id), page(site_id)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host(site_id)} not served")
        await asyncio.sleep(0.02)
    return time.time()


def _timeline(events: DockerEvents, name: str, started: float, **known: float | None) -> dict[str, float | None]:
    found = {
        "created": events.first(name, "service", "create"),
        "started": events.first(name, "container", "start"),
        "healthy": events.first(name, "container", "health_status: healthy"),
        **known,
    }
    return {k: (round(found[k] - started, 3) if found.get(k) else None) for k in MILESTONES if k in found}  # type: ignore[operator]


async def floor_deploy(site_id: int, root: Path) -> dict[str, Any]:
    """The same service without a health check, created through the SDK until served."""
    spec = _spec(site_id, root, healthcheck=False)
    with DockerEvents() as events:
        async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
            started = time.time()
            await asyncio.to_thread(API.create_service, name=spec.name, **to_docker(spec))
            served = await _first_served(client, site_id, time.monotonic() + 120)
        await asyncio.sleep(0.2)  # the last events' way through the stream
    return {"seconds": round(served - started, 3), "timeline": _timeline(events, spec.name, started, served=served)}


async def orchestrator_deploy(bench: Bench, site_id: int) -> dict[str, Any]:
    """`site.created` as Director publishes it, until `site.deployed`."""
    write_site(bench.root, site_id, page=page(site_id))
    event = site_event("site.created", site_id, 1, domains=[host(site_id)])
    name = f"site_{site_id:04d}"
    with DockerEvents() as events:
        async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
            started = time.time()
            serving = asyncio.create_task(_first_served(client, site_id, time.monotonic() + 300))
            await bench.director.publish(event)
            result = await bench.results.wait_for(event["event_id"], timeout=300)
            deployed = time.time()
            assert result.type == "site.deployed", result
            served = await serving
        await asyncio.sleep(0.2)
    timeline = _timeline(events, name, started, served=served, deployed=deployed)
    return {"seconds": round(deployed - started, 3), "timeline": timeline}


def _remove(site_id: int) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        API.remove_service(f"site_{site_id:04d}")


async def one_site(bench: Bench, first_site: int, sites_now: int, runs: int = 3) -> dict[str, Any]:
    """`runs` single deploys and as many floors, alternated, each of a new site (removed after)."""
    window = Settings().stable_seconds
    ours, floors = [], []
    for run in range(runs):
        log(f"deploy at {sites_now} sites: the floor, then one site.created ({run + 1}/{runs})")
        floor_id, our_id = first_site + 2 * run, first_site + 2 * run + 1
        floors.append(await floor_deploy(floor_id, bench.root))
        await asyncio.to_thread(_remove, floor_id)
        ours.append(await orchestrator_deploy(bench, our_id))
        await asyncio.to_thread(_remove, our_id)
        await asyncio.sleep(3)  # the removed tasks' containers stop (drain) before the next
    median, floor = statistics.median(r["seconds"] for r in ours), statistics.median(r["seconds"] for r in floors)
    return {
        "sites": sites_now,
        "seconds_median": round(median, 2),
        "floor_seconds_median": round(floor, 2),
        "window_seconds": window,
        "ratio_to_floor": round(median / floor, 2),
        "over_floor_and_window_seconds": round(median - floor - window, 2),
        "runs": ours,
        "floors": floors,
    }
