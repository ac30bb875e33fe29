"""What a site leaves on the host belongs to its own uid, and its router cannot outrank others."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
from support import TRAEFIK_API, Director, Results, deploy, served, site_event, write_site

from orchestrator.config import Settings

RUN_SH = """#!/bin/sh
cat /bin/sh > /site/private/suid-shell
chmod 4755 /site/private/suid-shell
chown 0:0 /site/private/suid-shell 2>/dev/null || echo "chown refused" > /site/private/chown-refused
echo made > /site/private/made-by-site
exec httpd -f -p "$PORT" -h /site/public
"""


async def test_files_a_site_writes_are_its_own_and_a_setuid_bit_gives_no_root(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    host = f"iso{site_id}.example.com"
    site_dir = write_site(sites_root, site_id, page=f"isolated {site_id}")
    (site_dir / "run.sh").write_text(RUN_SH)
    assert (
        await deploy(director, results, site_event("site.created", site_id, 1, domains=[host]))
    ).type == "site.deployed"
    await served(host, f"isolated {site_id}")

    uid = Settings().site_uid_base + site_id
    made = (site_dir / "private" / "made-by-site").stat()
    assert (made.st_uid, made.st_gid) == (uid, uid)
    shell = (site_dir / "private" / "suid-shell").stat()
    assert shell.st_mode & stat.S_ISUID  # the site may set the bit on its own file...
    assert shell.st_uid == uid != 0  # ...but the file is its own: set-uid to the site, never to root
    assert (site_dir / "private" / "chown-refused").exists()  # no capability to hand it to root


async def test_a_site_router_has_the_fixed_priority_whatever_its_domains(
    director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    domains = [f"d{i}-{'x' * 40}.prio{site_id}.example.com" for i in range(20)]
    write_site(sites_root, site_id, page=f"priority {site_id}")
    assert (
        await deploy(director, results, site_event("site.created", site_id, 1, domains=domains))
    ).type == "site.deployed"

    async with httpx.AsyncClient(timeout=5) as client:
        router = (await client.get(f"{TRAEFIK_API}/api/http/routers/site_{site_id:04d}@swarm")).json()

    assert router["priority"] == Settings().router_priority == 1  # not the length of its long rule
    assert len(router["rule"]) > 1000
