"""After `site.deployed`: a site that starts crash-looping is reported once, and once again when
it recovers, from Docker's events (no poll)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import docker
from support import Director, Results, deploy, eventually, served, site_event, write_site

RUN_SH = """#!/bin/sh
if [ -f /site/private/broken ]; then echo "config is broken" >&2; exit 1; fi
exec httpd -f -p "$PORT" -h /site/public
"""


async def test_a_site_that_starts_crash_looping_is_down_once_then_healthy_once(
    director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    host = f"health{site_id}.example.com"
    site_dir = write_site(sites_root, site_id, page=f"health page {site_id}")
    (site_dir / "run.sh").write_text(RUN_SH)
    assert (
        await deploy(director, results, site_event("site.created", site_id, 1, domains=[host]))
    ).type == "site.deployed"  # watched from now on

    # The owner breaks the site's config and its server dies: every new task exits at once.
    (site_dir / "private" / "broken").write_text("")
    (task,) = [t for t in api.tasks(filters={"service": f"site_{site_id:04d}", "desired-state": "running"})]
    api.kill(task["Status"]["ContainerStatus"]["ContainerID"])
    (down,) = await results.wait_health(site_id, 1, timeout=30)
    assert down.status in ("down", "unhealthy"), down
    # Several restarts of the crash loop (each a die, a start, a look): nothing more is said.
    await eventually(lambda: failed_tasks(api, site_id) >= 3, timeout=60)
    assert len([h for h in results.health if h.site_id == site_id]) == 1

    (site_dir / "private" / "broken").unlink()
    statuses = await results.wait_health(site_id, 2, timeout=60)

    assert [h.status for h in statuses] == [down.status, "healthy"]
    assert statuses[1].since > down.since
    await served(host, f"health page {site_id}")
    await asyncio.sleep(2)
    assert len([h for h in results.health if h.site_id == site_id]) == 2, [
        h for h in results.health if h.site_id == site_id
    ]  # no repeats after recovery


def failed_tasks(api: docker.APIClient, site_id: int) -> int:
    tasks = api.tasks(filters={"service": f"site_{site_id:04d}"})
    return sum(t["Status"]["State"] in ("failed", "complete", "rejected") for t in tasks)


async def test_a_site_whose_server_exits_is_down_at_once_and_healthy_once_swarm_restarted_it(
    director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    """The bound docs/guarantees.md states: down within seconds of the exit (Docker's `die` event,
    whatever the number of sites, not the probes' 60 s rest), healthy again within the restart
    delay plus the stability window (test settings: 1 s + 2 s) and a look."""
    host = f"exits{site_id}.example.com"
    write_site(sites_root, site_id, page=f"exit page {site_id}")
    assert (
        await deploy(director, results, site_event("site.created", site_id, 1, domains=[host]))
    ).type == "site.deployed"  # watched from now on: its server exits right after
    (container,) = api.containers(filters={"label": f"com.docker.swarm.service.name=site_{site_id:04d}"})
    killed = time.monotonic()
    api.exec_start(api.exec_create(container["Id"], ["sh", "-c", "kill $(pidof httpd)"]))

    await results.wait_health(site_id, 1, timeout=10)
    down_after = time.monotonic() - killed
    statuses = await results.wait_health(site_id, 2, timeout=30)
    healthy_after = time.monotonic() - killed

    assert [h.status for h in statuses] == ["down", "healthy"], statuses
    # The bound tells Docker's `die` event from the probes, which rest 60 s between looks once
    # healthy; 10 s leaves room for a machine whose cores are busy with the rest of the suite.
    assert down_after < 10, down_after
    assert healthy_after < 20, healthy_after
    await served(host, f"exit page {site_id}")
