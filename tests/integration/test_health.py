"""After `site.deployed`: a site that starts crash-looping is reported once, and once again when
it recovers, from Docker's events (no poll)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import docker
from support import Director, Results, deploy, served, site_event, write_site

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
    ).type == "site.deployed"
    await asyncio.sleep(3)  # watched from its first healthy look

    # The owner breaks the site's config and its server dies: every new task exits at once.
    (site_dir / "private" / "broken").write_text("")
    (task,) = [t for t in api.tasks(filters={"service": f"site_{site_id:04d}", "desired-state": "running"})]
    api.kill(task["Status"]["ContainerStatus"]["ContainerID"])
    (down,) = await results.wait_health(site_id, 1, timeout=30)
    assert down.status in ("down", "unhealthy"), down
    await asyncio.sleep(12)  # several restarts of the crash loop: nothing more is said
    assert len([h for h in results.health if h.site_id == site_id]) == 1

    (site_dir / "private" / "broken").unlink()
    statuses = await results.wait_health(site_id, 2, timeout=60)

    assert [h.status for h in statuses] == [down.status, "healthy"]
    assert statuses[1].since > down.since
    await served(host, f"health page {site_id}")
    await asyncio.sleep(3)
    assert len([h for h in results.health if h.site_id == site_id]) == 2  # no repeats after recovery
