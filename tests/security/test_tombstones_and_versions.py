"""Deletes of ids that never existed cannot pile up tombstones for ever, and a version that locks a
site (2^63-1) has an operator's way out."""

from __future__ import annotations

import asyncio
import time

import docker
from support import Director, OrchestratorProcess, Results, deploy, fresh_site_id, site_event

from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.tombstones import Tombstones, configs
from orchestrator_contract.sites import MAX_VERSION

DAY = 86400


def expiry(api: docker.APIClient, site_id: int) -> float:
    (config,) = configs(api, site_id)
    return float(config["Spec"]["Labels"]["com.director.expires"])


async def test_tombstones_of_sites_never_held_expire_soon_and_real_ones_after_days(
    director: Director, results: Results, api: docker.APIClient
) -> None:
    strangers = [fresh_site_id() for _ in range(20)]
    real = fresh_site_id()
    await deploy(director, results, site_event("site.created", real, 1, serving=False))
    events = [site_event("site.deleted", s, 3) for s in [*strangers, real]]
    for event in events:
        await director.publish(event)
    for event in events:
        assert (await results.wait_for(event["event_id"])).type == "site.removed"

    now = time.time()
    assert all(now < expiry(api, s) <= now + 3600 + 5 for s in strangers)  # the reorder window only
    assert now + 29 * DAY < expiry(api, real) <= now + 30 * DAY + 5

    tombstones = Tombstones(DockerClient("unix:///var/run/docker.sock", 30, 2))
    try:
        gone = await tombstones.expire(30 * DAY, now=now + 2 * 3600)  # two hours later
    finally:
        tombstones._docker.close()
    assert gone >= len(strangers)
    assert all(not configs(api, s) for s in strangers) and configs(api, real)


async def test_a_site_locked_at_the_largest_version_is_freed_by_reset_version(
    director: Director, results: Results, orchestrator: OrchestratorProcess, site_id: int
) -> None:
    locked = await deploy(director, results, site_event("site.created", site_id, MAX_VERSION, serving=False))
    assert locked.type == "site.deployed"
    stale = await deploy(director, results, site_event("site.updated", site_id, 7, serving=False))
    assert stale.type == "site.stale" and stale.applied_version == MAX_VERSION

    refused = await asyncio.to_thread(orchestrator.cli, "site", "reset-version", str(site_id))
    assert refused.returncode != 0 and "refusing" in refused.stderr  # no terminal, no --yes
    done = await asyncio.to_thread(orchestrator.cli, "site", "reset-version", str(site_id), "--yes")
    assert done.returncode == 0 and f"recorded version {MAX_VERSION}" in done.stdout, done

    applied = await deploy(director, results, site_event("site.updated", site_id, 8, serving=False))
    assert applied.type == "site.deployed" and applied.applied_version == 8
