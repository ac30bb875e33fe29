"""Director publishes, the orchestrator makes the swarm match, Traefik serves: what users see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
from support import (
    SITE_UID_BASE,
    DeadLetters,
    Director,
    OrchestratorProcess,
    Results,
    default_images,
    deploy,
    eventually,
    fetch,
    fresh_site_id,
    served,
    service,
    site_event,
    write_site,
)


async def test_created_dynamic_site_is_served_through_traefik(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    write_site(sites_root, site_id, page=f"<h1>hello from site {site_id}</h1>")
    event = site_event("site.created", site_id, 1, domains=[f"dyn{site_id}.example.com"])

    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.deployed", result
    assert result.service is not None and result.service.name == f"site_{site_id:04d}"
    assert result.service.replicas == 1
    assert result.version == 1 and result.site_id == site_id
    await served(f"dyn{site_id}.example.com", f"hello from site {site_id}")
    spec = service(api, f"site_{site_id:04d}")["Spec"]  # type: ignore[index]
    labels = spec["Labels"]
    assert labels[f"traefik.http.routers.site_{site_id:04d}.rule"] == f"Host(`dyn{site_id}.example.com`)"
    assert labels[f"traefik.http.services.site_{site_id:04d}.loadbalancer.server.port"] == "80"
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["Mounts"][0]["Source"] == str(sites_root / f"site_{site_id:04d}")
    assert container["Mounts"][0]["Target"] == "/site"
    assert "Dir" not in container  # no working directory for the runtime to resolve in the site's tree
    assert {"PORT=80", "HOST=0.0.0.0"} <= set(container["Env"])


async def test_a_new_site_without_run_sh_is_kept_idle_says_so_and_starts_once_run_sh_is_added(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    host = f"idle{site_id}.example.com"
    event = site_event("site.created", site_id, 1, domains=[host])

    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.failed" and result.error is not None, result
    assert (result.error.code, result.error.retryable) == ("no_run_script", False)
    assert "idle" in result.error.message and result.applied_version == 1
    site_dir = sites_root / f"site_{site_id:04d}"
    assert (site_dir / "public").is_dir() and (site_dir / "private").is_dir()
    assert site_dir.stat().st_uid == SITE_UID_BASE + site_id  # the site's own user
    assert service(api, f"site_{site_id:04d}")["Spec"]["Mode"]["Replicated"]["Replicas"] == 1  # type: ignore[index]

    write_site(sites_root, site_id, page=f"started later {site_id}")
    await served(host, f"started later {site_id}", timeout=30)


async def test_static_site_is_served_by_nginx(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    write_site(sites_root, site_id, page="static page, no run.sh", run_sh=False)
    event = site_event("site.created", site_id, 1, kind="static", domains=[f"static{site_id}.example.com"])

    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.deployed", result
    await served(f"static{site_id}.example.com", "static page, no run.sh")
    response = await fetch(f"static{site_id}.example.com")
    assert "nginx" in response.headers.get("server", "")
    container = service(api, f"site_{site_id:04d}")["Spec"]["TaskTemplate"]["ContainerSpec"]  # type: ignore[index]
    assert container["Image"] == default_images()["ORCHESTRATOR_STATIC_IMAGE"]  # pinned, never a tag
    site = next(m for m in container["Mounts"] if m["Target"] == "/site")
    assert site["ReadOnly"] is True and site["Source"] == str(sites_root / f"site_{site_id:04d}")


async def test_updated_domains_route_the_new_host_and_not_the_old(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    write_site(sites_root, site_id, page="moving site")
    old, new = f"old{site_id}.example.com", f"new{site_id}.example.com"
    created = site_event("site.created", site_id, 1, domains=[old])
    await director.publish(created)
    assert (await results.wait_for(created["event_id"])).type == "site.deployed"
    await served(old, "moving site")

    updated = site_event("site.updated", site_id, 2, domains=[new])
    await director.publish(updated)
    result = await results.wait_for(updated["event_id"])

    assert result.type == "site.deployed" and result.applied_version == 2
    await served(new, "moving site")
    assert (await fetch(old)).status_code == 404


async def test_not_serving_scales_to_zero_and_still_reports_deployed(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    write_site(sites_root, site_id, page="sleepy")
    event = site_event("site.created", site_id, 1, serving=False)

    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.deployed" and result.service is not None
    assert result.service.replicas == 0
    assert service(api, f"site_{site_id:04d}")["Spec"]["Mode"]["Replicated"]["Replicas"] == 0  # type: ignore[index]


async def test_resources_change_shows_in_the_service_limits(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    write_site(sites_root, site_id, page="resources")
    first = site_event("site.created", site_id, 1, resources={"cpus": 0.25, "memory": "64Mi"})
    await director.publish(first)
    assert (await results.wait_for(first["event_id"])).type == "site.deployed"

    second = site_event("site.updated", site_id, 2, resources={"cpus": 0.5, "memory": "128Mi"})
    await director.publish(second)
    assert (await results.wait_for(second["event_id"])).type == "site.deployed"

    limits = service(api, f"site_{site_id:04d}")["Spec"]["TaskTemplate"]["Resources"]["Limits"]  # type: ignore[index]
    assert limits == {"NanoCPUs": 500_000_000, "MemoryBytes": 128 * 2**20, "Pids": 512}


async def test_deleted_site_is_gone_and_its_files_are_in_the_trash(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    write_site(sites_root, site_id, page="precious user data")
    created = site_event("site.created", site_id, 1, domains=[f"del{site_id}.example.com"])
    await director.publish(created)
    assert (await results.wait_for(created["event_id"])).type == "site.deployed"

    deleted = site_event("site.deleted", site_id, 2)
    await director.publish(deleted)
    result = await results.wait_for(deleted["event_id"])

    assert result.type == "site.removed" and result.service is None
    assert service(api, f"site_{site_id:04d}") is None
    assert not (sites_root / f"site_{site_id:04d}").exists()
    trashed = list((sites_root / ".trash").glob(f"site_{site_id:04d}-*"))
    assert len(trashed) == 1
    assert (trashed[0] / "public" / "index.html").read_text() == "precious user data"

    again = site_event("site.deleted", site_id, 2)
    await director.publish(again)
    assert (await results.wait_for(again["event_id"])).type == "site.removed"
    assert len(list((sites_root / ".trash").glob(f"site_{site_id:04d}-*"))) == 1


async def test_deleting_a_site_that_never_existed_succeeds(director: Director, results: Results, site_id: int) -> None:
    event = site_event("site.deleted", site_id, 1)
    await director.publish(event)
    assert (await results.wait_for(event["event_id"])).type == "site.removed"


async def test_invalid_messages_are_dead_lettered_and_the_consumer_keeps_serving(
    director: Director,
    results: Results,
    dead_letters: DeadLetters,
    sites_root: Path,
    site_id: int,
) -> None:
    await dead_letters.take()
    bad_host = fresh_site_id()
    spaced_host = fresh_site_id()
    wrong_schema = fresh_site_id()
    await director.publish(body=b"{not json", routing_key="site.created", message_id="bad-json")
    event = site_event("site.created", wrong_schema, 1)
    del event["site"]["kind"]
    await director.publish(event)
    await director.publish(site_event("site.created", bad_host, 1, domains=["evil`) || Host(`x.example.com"]))
    await director.publish(site_event("site.created", spaced_host, 1, domains=["two words.example.com"]))
    mismatch = site_event("site.created", fresh_site_id(), 1)
    await director.publish(mismatch, routing_key="site.updated")
    write_site(sites_root, site_id, page="good")
    good = site_event("site.created", site_id, 1)
    await director.publish(good)

    assert (await results.wait_for(good["event_id"])).type == "site.deployed"
    for sid in (bad_host, spaced_host, wrong_schema):
        failed = await results.wait_for_site(sid)
        assert failed.type == "site.failed" and failed.error is not None
        assert failed.error.code == "invalid_event" and failed.error.retryable is False
    letters = await dead_letters.take()
    reasons = {m.message_id: (m.headers or {}).get("x-orchestrator-error-code") for m in letters}
    assert reasons.get("bad-json") == "invalid_event"
    assert reasons.get(event["event_id"]) == "invalid_event"
    assert reasons.get(mismatch["event_id"]) == "invalid_event"
    assert len(letters) == 5, [m.message_id for m in letters]
    assert all((m.headers or {}).get("x-orchestrator-error-message") for m in letters)


async def test_the_same_event_twice_leaves_one_service_with_the_same_spec(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, site_id: int
) -> None:
    write_site(sites_root, site_id, page="twice")
    event = site_event("site.created", site_id, 1)
    await director.publish(event)
    assert (await results.wait_for(event["event_id"])).type == "site.deployed"
    before = service(api, f"site_{site_id:04d}")

    await director.publish(event)  # a redelivery: same event id, same body
    await results_count(results, event["event_id"], 2)

    after = service(api, f"site_{site_id:04d}")
    assert before is not None and after is not None
    assert after["ID"] == before["ID"] and after["Spec"] == before["Spec"]
    assert after["Version"]["Index"] == before["Version"]["Index"]  # nothing was rewritten
    assert len(api.services(filters={"name": f"site_{site_id:04d}"})) == 1


async def results_count(results: Results, event_id: str, count: int) -> None:
    from support import eventually

    await eventually(lambda: len(results.by_cause.get(event_id, [])) >= count, 60)
    assert all(r.type == "site.deployed" for r in results.by_cause[event_id])


async def test_every_handled_event_logs_one_structured_line(
    orchestrator: OrchestratorProcess, director: Director, results: Results, site_id: int
) -> None:
    event = site_event("site.created", site_id, 1, serving=False)
    assert (await deploy(director, results, event)).type == "site.deployed"

    def handled() -> list[dict[str, Any]]:
        lines = [line for line in orchestrator.log_lines() if line.get("msg") == "event handled"]
        return [line for line in lines if line.get("event_id") == event["event_id"]]

    await eventually(lambda: bool(handled()), 10)  # its line follows the ack
    (line,) = handled()
    assert {"event_id", "site_id", "version", "outcome", "duration_ms"} <= set(line)
    assert line["site_id"] == site_id and line["outcome"] == "site.deployed"
    lines = orchestrator.log_lines()
    assert any(line.get("msg") == "consuming" for line in lines)
    every = [line for line in lines if line.get("msg") == "event handled"]
    assert all({"type", "outcome", "duration_ms"} <= set(line) for line in every)  # site, terminal, file
    json.dumps(every)  # one JSON object per line


async def test_a_burst_of_events_for_one_site_does_not_hold_up_another_site(
    director: Director, results: Results, site_id: int
) -> None:
    holder, busy, other = site_id, fresh_site_id(), fresh_site_id()
    taken = f"taken{holder}.example.com"
    assert (
        await deploy(director, results, site_event("site.created", holder, 1, domains=[taken], serving=False))
    ).type == ("site.deployed")
    # Slow events for one site: each reaches for a domain another site holds and waits the domain
    # wait out (1.5 s in the tests) in its site's lane, holding a prefetch slot but no Docker worker.
    # More of them than the test orchestrator's Docker workers (3): with prefetch no larger than the
    # workers, the quick site's event would wait behind three of these.
    burst = [
        site_event("site.created" if v == 1 else "site.updated", busy, v, domains=[taken], serving=False)
        for v in range(1, 6)
    ]
    for event in burst:
        await director.publish(event)
    quick = site_event("site.created", other, 1, serving=False)
    await director.publish(quick)

    assert (await results.wait_for(quick["event_id"])).type == "site.deployed"
    done = sum(event["event_id"] in results.by_cause for event in burst)
    assert done <= 2, f"the other site waited behind {done} of the busy site's events"
    for event in burst:  # each in turn, in order, none lost
        result = await results.wait_for(event["event_id"], timeout=60)
        assert result.error is not None and result.error.code == "domain_conflict", result
