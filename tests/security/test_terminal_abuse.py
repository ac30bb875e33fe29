"""A site owner (or a stolen Director session) abuses terminals: racing opens of one session id
and of many, and a shell flooding its output. The limits hold on the real stack."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path

import docker
from support import SESSION_LABEL, Director, Results, Running, deploy, site_event, terminal_bus, write_site

OUTPUT_BUDGET = 256 * 1024  # the default ORCHESTRATOR_TERMINAL_OUTPUT_BYTES_PER_SECOND


def session_containers(api: docker.APIClient, site_id: int) -> list[dict[str, object]]:
    return api.containers(all=True, filters={"label": [SESSION_LABEL, f"com.director.site-id={site_id}"]})


async def test_racing_opens_make_one_session_per_id_and_never_pass_the_limit(
    stack: Running, director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    write_site(sites_root, site_id, page="terminals")
    assert (await deploy(director, results, site_event("site.created", site_id, 1))).type == "site.deployed"
    async with terminal_bus(stack.vhost) as bus:
        same = await bus.session()
        await asyncio.gather(*(same.send("open", site_id=site_id, cols=80, rows=24) for _ in range(10)))
        await same.wait_type("opened")
        others = [await bus.session() for _ in range(8)]
        await asyncio.gather(*(o.send("open", site_id=site_id, cols=80, rows=24) for o in others))
        for other in others:
            await other.wait(lambda o=other: any(e.type in ("opened", "failed") for e in o.events), timeout=60)

        opened = [o for o in others if any(e.type == "opened" for e in o.events)]
        refused = [o for o in others if any(e.type == "failed" and e.code == "terminal_limit" for e in o.events)]
        assert len(opened) == 2 and len(refused) == 6  # three per site, the raced id counted once
        assert [e.type for e in same.events if e.type != "output"] == ["opened"]  # ten opens, one session
        assert len(session_containers(api, site_id)) == 3
        for session in [same, *opened]:
            await session.send("close")
            await session.wait_type("closed")
    assert session_containers(api, site_id) == []


async def test_a_flooding_shell_is_held_to_the_output_budget(
    stack: Running, director: Director, results: Results, sites_root: Path, site_id: int
) -> None:
    write_site(sites_root, site_id, page="flood")
    assert (await deploy(director, results, site_event("site.created", site_id, 1))).type == "site.deployed"
    async with terminal_bus(stack.vhost) as bus:
        session = await bus.session(uuid.uuid4())
        await session.send("open", site_id=site_id, cols=80, rows=24)
        await session.wait_type("opened")
        await session.type("yes\n")
        await session.wait_output(b"y\r\ny\r\n")
        started, first = time.monotonic(), len(session.output)
        await asyncio.sleep(3)
        rate = (len(session.output) - first) / (time.monotonic() - started)
        await session.send("input", data=base64.b64encode(b"\x03").decode())  # Ctrl-C stops it
        await session.send("close")
        await session.wait_type("closed")
    assert OUTPUT_BUDGET / 4 < rate < OUTPUT_BUDGET * 1.5, rate  # paced at the budget, not MiB/s
