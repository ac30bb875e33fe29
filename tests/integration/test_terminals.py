"""Web terminals over the bus, as Director's web layer would drive them: commands on
`director.terminals` as the `director` user, session events read from `orchestrator.terminals`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import docker
import pytest
from support import (
    SESSION_LABEL,
    SITE_UID_BASE,
    DeadLetters,
    Director,
    OrchestratorProcess,
    Results,
    Running,
    Terminal,
    TerminalBus,
    connected,
    default_images,
    deploy,
    eventually,
    reason,
    site_event,
    terminal_bus,
    write_site,
)


@pytest.fixture(scope="module")
async def bus(stack: Running) -> AsyncIterator[TerminalBus]:
    async with terminal_bus(stack.vhost) as opened:
        yield opened


async def terminal(bus: TerminalBus) -> Terminal:
    return await bus.session()


async def deployed_site(director: Director, results: Results, sites_root: Path, site_id: int, **site: Any) -> str:
    host = f"term{site_id}.example.com"
    write_site(sites_root, site_id, page=f"terminal page {site_id}")
    result = await deploy(director, results, site_event("site.created", site_id, 1, domains=[host], **site))
    assert result.type == "site.deployed", result
    return host


async def opened(bus: TerminalBus, site_id: int) -> Terminal:
    """A new session on the site, once `opened` arrived."""
    session = await terminal(bus)
    await session.send("open", site_id=site_id, cols=80, rows=24)
    await session.wait_type("opened")
    return session


def session_container(api: docker.APIClient, session_id: uuid.UUID) -> dict[str, Any] | None:
    found = api.containers(all=True, filters={"label": f"{SESSION_LABEL}={session_id}"})
    return api.inspect_container(found[0]["Id"]) if found else None


async def test_a_terminal_runs_a_shell_in_the_sites_own_image_with_its_files(
    bus: TerminalBus,
    director: Director,
    results: Results,
    sites_root: Path,
    site_id: int,
    api: docker.APIClient,
    orchestrator: OrchestratorProcess,
) -> None:
    await deployed_site(director, results, sites_root, site_id, env={"GREETING": "hello-from-env"})
    session = await terminal(bus)

    await session.send("open", site_id=site_id, cols=100, rows=30)
    opened = await session.wait_type("opened")
    await session.type("echo $((6*7)); cat /site/public/index.html; echo $GREETING; id -u; stty size\n")
    await session.wait_output(b"30 100", timeout=20)  # stty size: the last answer

    assert opened.seq == 0
    output = session.output
    assert b"42" in output and f"terminal page {site_id}".encode() in output
    assert b"hello-from-env" in output
    assert f"{SITE_UID_BASE + site_id}".encode() in output  # the site's own uid, not root
    assert b"30 100" in output
    assert b"hello-from-env" not in orchestrator.log_path.read_bytes()  # terminal data is never logged
    seqs = [e.seq for e in session.events]
    assert seqs == list(range(len(seqs)))  # in order, no gap
    container = session_container(api, session.session_id)
    assert container is not None
    site_image = api.inspect_service(f"site_{site_id:04d}")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert container["Config"]["Image"] == site_image
    assert container["HostConfig"]["LogConfig"]["Type"] == "none"  # terminal data is never logged
    assert container["HostConfig"]["PortBindings"] in ({}, None)

    await session.send("resize", cols=120, rows=40)
    await asyncio.sleep(0.5)
    await session.type("stty size\n")
    await session.wait_output(b"40 120", timeout=20)

    await session.send("close")
    closed = await session.wait_type("closed")
    assert closed.seq == max(e.seq for e in session.events)  # closed comes last
    await eventually(lambda: session_container(api, session.session_id) is None, timeout=15)


async def test_a_static_sites_terminal_runs_the_base_image_never_nginx(
    bus: TerminalBus, director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    await deployed_site(director, results, sites_root, site_id, kind="static")
    session = await terminal(bus)

    await session.send("open", site_id=site_id, cols=80, rows=24)
    await session.wait_type("opened")
    await session.type("echo edit > /site/public/new.html; ls /site/public; ps -o comm\n")
    await session.wait_output(b"new.html", timeout=20)
    await asyncio.sleep(0.3)

    container = session_container(api, session.session_id)
    assert container is not None
    assert container["Config"]["Image"] == default_images()["ORCHESTRATOR_DEFAULT_IMAGE"]  # pinned
    assert b"nginx" not in session.output
    assert (sites_root / f"site_{site_id:04d}" / "public" / "new.html").read_text() == "edit\n"
    await session.send("close")
    await session.wait_type("closed")


async def test_the_shell_ending_closes_the_session_and_removes_its_container(
    bus: TerminalBus, director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    await deployed_site(director, results, sites_root, site_id)
    session = await opened(bus, site_id)

    await session.type("exit\n")
    closed = await session.wait_type("closed")

    assert closed.reason == "the shell ended"
    await eventually(lambda: session_container(api, session.session_id) is None, timeout=15)
    await session.type("echo too late\n")
    failed = await session.wait_type("failed")
    assert failed.code == "unknown_session"


async def test_unknown_sessions_and_missing_sites_are_answered_with_a_code(bus: TerminalBus, site_id: int) -> None:
    unknown = await terminal(bus)
    await unknown.type("ls\n")
    failed = await unknown.wait_type("failed")
    assert failed.code == "unknown_session"

    missing = await terminal(bus)
    await missing.send("open", site_id=site_id, cols=80, rows=24)
    failed = await missing.wait_type("failed")
    assert failed.code == "not_found"
    assert not any(e.type == "opened" for e in missing.events)


async def test_at_most_three_sessions_per_site(
    bus: TerminalBus, director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    await deployed_site(director, results, sites_root, site_id)
    sessions = [await opened(bus, site_id) for _ in range(3)] + [await terminal(bus)]

    await sessions[3].send("open", site_id=site_id, cols=80, rows=24)
    failed = await sessions[3].wait_type("failed")

    assert failed.code == "terminal_limit"
    assert session_container(api, sessions[3].session_id) is None
    await sessions[0].send("close")
    await sessions[0].wait_type("closed")
    await sessions[3].send("open", site_id=site_id, cols=80, rows=24)
    await sessions[3].wait_type("opened")  # a freed slot can be used again
    for session in sessions[1:]:
        await session.send("close")
        await session.wait_type("closed")


async def test_deleting_a_site_closes_its_terminals(
    bus: TerminalBus, director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    await deployed_site(director, results, sites_root, site_id)
    session = await opened(bus, site_id)

    event = site_event("site.deleted", site_id, 2)
    await director.publish(event)
    assert (await results.wait_for(str(event["event_id"]))).type == "site.removed"

    await session.wait_type("closed")
    assert session_container(api, session.session_id) is None


async def test_malformed_commands_are_dead_lettered_and_strangers_get_no_answer(
    bus: TerminalBus, dead_letters: DeadLetters, vhost: str
) -> None:
    session = await terminal(bus)
    await session.send("resize", cols="wide", rows=24)  # wrong type
    failed = await session.wait_type("failed")
    assert failed.code == "invalid_event"

    async with connected("guest", vhost) as stranger:
        channel = await stranger.channel()
        exchange = await channel.get_exchange("director.terminals", ensure=False)
        body = json.dumps({"session_id": str(session.session_id), "data": "bHM="}).encode()
        await exchange.publish(aio_pika.Message(body, user_id="guest"), "terminal.input")

    def about_the_session() -> list[str]:
        # Other tests' letters (not JSON, some of them) share the queue: pick this session's by its id.
        return sorted(reason(m) for m in dead_letters.seen.values() if str(session.session_id).encode() in m.body)

    async def both() -> bool:
        await dead_letters.take()
        return len(about_the_session()) >= 2

    await eventually(both, timeout=20)
    assert about_the_session() == ["invalid_event", "unauthenticated"]
    assert [e.type for e in session.events] == ["failed"]  # nothing said for the stranger


async def test_an_idle_session_is_closed(
    bus: TerminalBus, director: Director, results: Results, sites_root: Path, site_id: int, api: docker.APIClient
) -> None:
    """The tests' orchestrator closes sessions after 8 s without input (900 s by default)."""
    await deployed_site(director, results, sites_root, site_id)
    session = await opened(bus, site_id)
    started = time.monotonic()

    closed = await session.wait_type("closed", timeout=30)

    assert closed.reason is not None and "idle" in closed.reason
    assert time.monotonic() - started >= 7
    assert session_container(api, session.session_id) is None
