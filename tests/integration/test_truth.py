"""`site.deployed` means the site answers through Traefik; anything else is a `site.failed` that
says why. Broken sites as a new user would make them, healthy sites, failing updates and
redeploys, each watched through Traefik the way a visitor sees it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import httpx
from support import (
    TRAEFIK,
    TRAEFIK_API,
    Director,
    Results,
    deploy,
    eventually,
    fetch,
    fresh_site_id,
    served,
    service,
    site_event,
    write_site,
)

from orchestrator.config import Settings
from orchestrator.traefik.labels import labels as traefik_labels
from orchestrator_contract.hostnames import parse_hostname
from orchestrator_contract.results import SiteResult


def run_sh(sites_root: Path, site_id: int, script: str, page: str = "") -> Path:
    site_dir = write_site(sites_root, site_id, page=page or f"page of {site_id}")
    (site_dir / "run.sh").write_text("#!/bin/sh\n" + script)
    return site_dir


def no_deployed(results: Results, site_id: int) -> bool:
    return not any(r.type == "site.deployed" for rs in results.by_cause.values() for r in rs if r.site_id == site_id)


# --- the broken-site corpus -------------------------------------------------------------------


async def test_a_run_sh_that_exits_at_once_fails_with_its_last_log_lines(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    run_sh(sites_root, site_id, 'echo "cannot find config.yml" >&2\nexit 1\n')
    event = site_event("site.created", site_id, 1, env={"DB_PASSWORD": "hunter2-secret"})

    result = await deploy(director, results, event)

    assert result.type == "site.failed" and result.error is not None, result
    assert result.error.code == "run_script_failed" and result.error.retryable is False
    assert "status 1" in result.error.message and "cannot find config.yml" in result.error.message
    assert "hunter2-secret" not in result.model_dump_json()
    assert no_deployed(results, site_id)


async def test_a_server_that_crashes_soon_after_start_is_caught_before_it_is_reported(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    """It answers for a second, then dies, again and again: shorter than the stability window
    (ORCHESTRATOR_STABLE_SECONDS, 2 s in the tests, 5 s by default), so it is never healthy."""
    host = f"crash{site_id}.example.com"
    run_sh(sites_root, site_id, 'httpd -f -p "$PORT" -h /site/public &\nsleep 1\nkill $!\nexit 3\n')

    result = await deploy(director, results, site_event("site.created", site_id, 1, domains=[host]))

    assert result.type == "site.failed" and result.error is not None, result
    assert result.error.code == "run_script_failed", result.error
    assert "status 3" in result.error.message
    assert no_deployed(results, site_id)


async def test_a_server_on_the_wrong_port_fails_as_not_listening(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    run_sh(sites_root, site_id, "exec httpd -f -p 8080 -h /site/public\n")

    result = await deploy(director, results, site_event("site.created", site_id, 1))

    assert result.type == "site.failed" and result.error is not None, result
    assert result.error.code == "not_listening", result.error
    assert no_deployed(results, site_id)


async def test_a_custom_image_that_does_not_exist_fails_as_image_not_found(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    write_site(sites_root, site_id, page="never served")
    event = site_event("site.created", site_id, 1, image={"name": "no-such-image:1.0", "custom": True})

    started = time.monotonic()
    result = await deploy(director, results, event)

    assert result.type == "site.failed" and result.error is not None, result
    assert result.error.code == "image_not_found", result.error
    assert "no-such-image" in result.error.message
    assert time.monotonic() - started < 30  # a missing image never gets better: no waiting it out


# --- healthy sites: reported when served ---------------------------------------------------------


async def test_every_deployed_result_of_a_burst_arrives_when_the_site_is_already_served(
    director: Director, results: Results, sites_root: Path
) -> None:
    sites = [fresh_site_id() for _ in range(6)]
    events = {}
    for site_id in sites:
        write_site(sites_root, site_id, page=f"burst page {site_id}")
        events[site_id] = site_event("site.created", site_id, 1, domains=[f"burst{site_id}.example.com"])

    async def deployed_then_fetched(site_id: int) -> tuple[SiteResult, httpx.Response]:
        result = await results.wait_for(events[site_id]["event_id"], timeout=120)
        return result, await fetch(f"burst{site_id}.example.com")  # at once, no retry

    waiting = [asyncio.create_task(deployed_then_fetched(site_id)) for site_id in sites]
    for event in events.values():
        await director.publish(event)
    outcome = await asyncio.gather(*waiting)

    for site_id, (result, response) in zip(sites, outcome, strict=True):
        assert result.type == "site.deployed", result
        assert result.probe is not None and result.probe.status == 200 and result.probe.duration_ms > 0
        assert response.status_code == 200 and f"burst page {site_id}" in response.text, (site_id, response)


# --- failing updates and redeploys under load ------------------------------------------------------


@contextlib.asynccontextmanager
async def request_loop(host: str, expect: str) -> AsyncIterator[Counter[str]]:
    """Requests through Traefik every 20 ms for as long as the block runs; counts each outcome
    ("ok" only for a 200 carrying `expect`)."""
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()

    async def loop() -> None:
        async with httpx.AsyncClient(base_url=TRAEFIK, timeout=5) as client:
            while not stop.is_set():
                try:
                    response = await client.get("/", headers={"Host": host})
                    ok = response.status_code == 200 and expect in response.text
                    outcomes["ok" if ok else f"{response.status_code} {response.text[:40]!r}"] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                await asyncio.sleep(0.02)

    task = asyncio.create_task(loop())
    try:
        yield outcomes
    finally:
        stop.set()
        await task


BREAKABLE = 'if [ "$BREAK" = "1" ]; then echo "refusing to start: BREAK=1" >&2; exit 1; fi\n'
BREAKABLE += 'exec httpd -f -p "$PORT" -h /site/public\n'


async def test_a_failing_update_is_rolled_back_while_the_old_version_keeps_serving(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    host = f"rollback{site_id}.example.com"
    run_sh(sites_root, site_id, BREAKABLE, page=f"version one of {site_id}")
    created = await deploy(director, results, site_event("site.created", site_id, 1, domains=[host]))
    assert created.type == "site.deployed", created

    async with request_loop(host, f"version one of {site_id}") as outcomes:
        await asyncio.sleep(0.5)
        broken = site_event("site.updated", site_id, 2, domains=[host], env={"BREAK": "1"})
        result = await deploy(director, results, broken)
        await asyncio.sleep(1)

    assert result.type == "site.failed" and result.error is not None, result
    assert result.rolled_back is True and result.applied_version == 1, result
    assert result.error.code == "run_script_failed" and "refusing to start" in result.error.message
    assert set(outcomes) == {"ok"} and outcomes["ok"] > 20, outcomes
    labels = service(api, f"site_{site_id:04d}")["Spec"]["Labels"]  # type: ignore[index]
    assert labels["com.director.version"] == "1"


async def test_redeploys_under_a_request_loop_fail_no_request(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    host = f"redeploy{site_id}.example.com"
    run_sh(sites_root, site_id, BREAKABLE, page=f"always up {site_id}")
    created = await deploy(director, results, site_event("site.created", site_id, 1, domains=[host]))
    assert created.type == "site.deployed", created

    async with request_loop(host, f"always up {site_id}") as outcomes:
        for version in range(2, 5):  # three (the benchmark does ten); a lost request shows in any
            event = site_event("site.updated", site_id, version, domains=[host], env={"RELEASE": str(version)})
            result = await deploy(director, results, event)
            assert result.type == "site.deployed", result
        await asyncio.sleep(1)

    assert set(outcomes) == {"ok"}, outcomes
    assert outcomes["ok"] > 40, outcomes


# --- fast answers -------------------------------------------------------------------------------------


async def test_a_domain_conflict_is_answered_within_seconds(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    owner, claimer = site_id, fresh_site_id()
    host = f"owned{owner}.example.com"
    write_site(sites_root, owner, page="owner")
    assert (await deploy(director, results, site_event("site.created", owner, 1, domains=[host]))).type == (
        "site.deployed"
    )

    started = time.monotonic()
    result = await deploy(director, results, site_event("site.created", claimer, 1, domains=[host]))

    assert result.type == "site.failed" and result.error is not None and result.error.code == "domain_conflict"
    assert time.monotonic() - started < 10, "a conflict is answered within seconds"
    await served(host, "owner")


async def test_a_restart_of_a_serving_site_replaces_its_task_and_fails_no_request(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    host = f"restart{site_id}.example.com"
    run_sh(sites_root, site_id, BREAKABLE, page=f"restarted {site_id}")
    created = await deploy(director, results, site_event("site.created", site_id, 3, domains=[host]))
    assert created.type == "site.deployed", created
    name = f"site_{site_id:04d}"
    before = {t["ID"] for t in api.tasks(filters={"service": name, "desired-state": "running"})}

    async with request_loop(host, f"restarted {site_id}") as outcomes:
        request = site_event("site.restart_requested", site_id, 3)
        result = await deploy(director, results, request)
        await asyncio.sleep(1)

    assert result.type == "site.deployed" and result.applied_version == 3 and result.probe is not None, result
    after = {t["ID"] for t in api.tasks(filters={"service": name, "desired-state": "running"})}
    assert after and not after & before, "a new task serves"
    assert set(outcomes) == {"ok"} and outcomes["ok"] > 20, outcomes
    assert service(api, name)["Spec"]["Labels"]["com.director.version"] == "3"  # type: ignore[index]


async def test_a_task_that_vanishes_while_traefik_routes_to_it_fails_no_request(
    api: docker.APIClient, site_id: int
) -> None:
    """A task can be gone before Traefik's next refresh drops it (its node lost, or a refresh later
    than a stopped task's drain), and a dial to its address is never answered. Two tasks behind a
    site's labels; one container is killed while a visitor asks: each dial to it fails within
    Traefik's dial timeout and the retry takes the request to the other task."""
    settings = Settings()
    host = f"vanish{site_id}.example.com"
    name = f"vanish_{site_id}"
    routing = traefik_labels(
        router=name, hosts=[parse_hostname(host)], network=settings.network, port=8080,
        entrypoint=settings.traefik_entrypoint, priority=10, tls_entrypoint=settings.tls_entrypoint,
    )  # fmt: skip
    serve = f"mkdir -p /w && echo 'vanish {site_id}' > /w/index.html && exec httpd -f -p 8080 -h /w"
    here = api.info()["Swarm"]["NodeID"]  # where the test can kill a container (the cluster tests add nodes)
    template = docker.types.TaskTemplate(
        container_spec=docker.types.ContainerSpec("director/base:latest", ["sh", "-c", serve]),
        networks=[docker.types.NetworkAttachmentConfig(settings.network)],
        placement=docker.types.Placement(constraints=[f"node.id=={here}"]),
    )
    api.create_service(template, name=name, labels=routing, mode=docker.types.ServiceMode("replicated", replicas=2))
    try:

        async def both_routed() -> bool:
            async with httpx.AsyncClient(base_url=TRAEFIK_API, timeout=2) as client:
                found = (await client.get(f"/api/http/services/{name}@swarm")).json()
            return len(found.get("loadBalancer", {}).get("servers", [])) == 2

        await eventually(both_routed, 60)
        async with request_loop(host, f"vanish {site_id}") as outcomes:
            await asyncio.sleep(1)
            (victim, *_) = api.containers(filters={"label": f"com.docker.swarm.service.name={name}"})
            api.kill(victim["Id"])
            await asyncio.sleep(8)  # past Traefik's drop of the dead task

        assert set(outcomes) == {"ok"} and outcomes["ok"] > 20, outcomes
    finally:
        api.remove_service(name)


async def test_a_restart_of_a_site_that_does_not_exist_is_not_found(director: Director, results: Results) -> None:
    result = await deploy(director, results, site_event("site.restart_requested", fresh_site_id(), 1))

    assert result.type == "site.failed" and result.error is not None
    assert result.error.code == "not_found" and result.error.retryable is False
