"""Terminal sessions on a fake Docker host (socket pairs for TTYs): racing opens, limits, strays,
and the output budget."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakes import FakeSiteDirs

from orchestrator.config import Settings
from orchestrator.errors import DockerConflict, TerminalRefused
from orchestrator.terminals.container import SessionContainer
from orchestrator.terminals.sessions import TerminalSessions
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.terminals import TerminalUpdate


@dataclass
class FakeHost:
    """Session containers as socket pairs: `shells[container]` is the shell's end of the TTY."""

    deployment: str = "test"
    shells: dict[str, socket.socket] = field(default_factory=dict)
    owners: dict[str, tuple[str, str]] = field(default_factory=dict)  # container -> (session, owner)
    removed: list[str] = field(default_factory=list)

    async def site_service(self, site_id: int) -> dict[str, Any] | None:
        await asyncio.sleep(0.01)  # a Docker call: other commands run meanwhile
        return {"Labels": {"com.director.managed-by": "orchestrator"}, "TaskTemplate": {}}

    async def start(self, container: SessionContainer, cols: int, rows: int) -> tuple[str, socket.socket]:
        await asyncio.sleep(0.01)
        ours, shell = socket.socketpair()
        ident = f"c{len(self.owners)}"
        self.shells[ident] = shell
        labels = container.labels
        self.owners[ident] = (labels["com.director.terminal-session"], labels["com.director.terminal-owner"])
        return ident, ours

    async def resize(self, container_id: str, cols: int, rows: int) -> None:
        if container_id not in self.shells:  # what Docker says of a container that is not running
            raise DockerConflict(f"Container {container_id} is not running")

    async def remove(self, container_id: str) -> None:
        self.removed.append(container_id)
        if (shell := self.shells.pop(container_id, None)) is not None:
            shell.close()
        self.owners.pop(container_id, None)

    async def sessions(self, site_id: int | None = None) -> list[tuple[str, str, str]]:
        return [(c, s, o) for c, (s, o) in self.owners.items()]

    async def close_site(self, site_id: int) -> int:
        return 0


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
def updates() -> list[TerminalUpdate]:
    return []


def sessions_with(host: FakeHost, updates: list[TerminalUpdate], **settings: Any) -> TerminalSessions:
    async def emit(update: TerminalUpdate) -> None:
        updates.append(update)

    dirs = FakeSiteDirs(existing={"site_0001": 1, "site_0002": 2})
    return TerminalSessions(Settings(**settings), host, dirs, emit)  # type: ignore[arg-type]


async def test_racing_opens_of_one_session_id_make_one_session(host: FakeHost, updates: list[TerminalUpdate]) -> None:
    sessions = sessions_with(host, updates)
    session_id = uuid.uuid4()
    await asyncio.gather(*(sessions.open(session_id, 1, 80, 24) for _ in range(10)))
    assert len(host.owners) == 1 and [u.type for u in updates] == ["opened"]
    await sessions.stop()


async def test_racing_opens_cannot_pass_the_per_site_limit(host: FakeHost, updates: list[TerminalUpdate]) -> None:
    sessions = sessions_with(host, updates, terminal_max_per_site=3)
    outcomes = await asyncio.gather(
        *(sessions.open(uuid.uuid4(), 1, 80, 24) for _ in range(10)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, TerminalRefused)]
    assert len(host.owners) == 3 and len(refused) == 7
    assert {r.code for r in refused} == {ErrorCode.TERMINAL_LIMIT}
    await sessions.stop()


async def test_an_open_naming_another_sites_session_is_refused(host: FakeHost, updates: list[TerminalUpdate]) -> None:
    sessions = sessions_with(host, updates)
    session_id = uuid.uuid4()
    await sessions.open(session_id, 1, 80, 24)
    with pytest.raises(TerminalRefused) as refused:
        await sessions.open(session_id, 2, 80, 24)
    assert refused.value.code is ErrorCode.INVALID_EVENT and len(host.owners) == 1
    await sessions.stop()


async def test_the_total_cap_holds_over_every_site(host: FakeHost, updates: list[TerminalUpdate]) -> None:
    sessions = sessions_with(host, updates, terminal_max_total=2)
    await sessions.open(uuid.uuid4(), 1, 80, 24)
    await sessions.open(uuid.uuid4(), 2, 80, 24)
    with pytest.raises(TerminalRefused, match="terminals are open"):
        await sessions.open(uuid.uuid4(), 1, 80, 24)
    await sessions.stop()


async def test_a_stray_container_of_ours_is_removed_and_others_are_left(
    host: FakeHost, updates: list[TerminalUpdate]
) -> None:
    sessions = sessions_with(host, updates)
    await sessions.open(uuid.uuid4(), 1, 80, 24)
    host.owners["stray"] = (str(uuid.uuid4()), sessions.owner)  # an open that failed half way
    host.owners["theirs"] = (str(uuid.uuid4()), "another process")  # a standby's or an old one's
    await sessions._remove_strays()
    assert host.removed == ["stray"] and "theirs" in host.owners and len(sessions._sessions) == 1
    await sessions.stop()


async def test_output_past_the_budget_waits_instead_of_flooding(host: FakeHost, updates: list[TerminalUpdate]) -> None:
    budget = 64 * 1024
    sessions = sessions_with(host, updates, terminal_output_bytes_per_second=budget)
    await sessions.open(uuid.uuid4(), 1, 80, 24)
    (shell,) = host.shells.values()
    shell.setblocking(False)
    started, written = time.monotonic(), 0
    while time.monotonic() - started < 2.0:  # a `yes`: as fast as the TTY takes it
        try:
            written += shell.send(b"y\n" * 4096)
        except BlockingIOError:
            await asyncio.sleep(0.01)
    sent = sum(len(u.data or "") * 3 // 4 for u in updates if u.type == "output")
    assert sent <= budget * 3 + 2 * 16384  # a second's burst, two seconds at the budget, a batch over
    assert written < 4 * budget * 2.5  # the shell was held back, not read and dropped
    await sessions.stop()


async def test_an_answer_to_input_is_not_held_for_the_batch_interval(host: FakeHost) -> None:
    """Output streaming is gathered for the batch interval (here a minute: nothing else may
    leave in this test), but the answer to a keystroke leaves as soon as it is read, with what
    was gathered before it."""
    outputs: list[bytes] = []
    arrived = asyncio.Condition()

    async def emit(update: TerminalUpdate) -> None:
        if update.type == "output":
            async with arrived:
                outputs.append(base64.b64decode(update.data or ""))
                arrived.notify_all()

    async def after(count: int) -> list[bytes]:
        async with asyncio.timeout(10), arrived:
            await arrived.wait_for(lambda: len(outputs) >= count)
        return outputs

    dirs = FakeSiteDirs(existing={"site_0001": 1})
    sessions = TerminalSessions(Settings(terminal_batch_seconds=60), host, dirs, emit)  # type: ignore[arg-type]
    session_id = uuid.uuid4()
    await sessions.open(session_id, 1, 80, 24)
    (shell,) = host.shells.values()
    shell.sendall(b"first")  # after a quiet spell: at once
    assert await after(1) == [b"first"]
    shell.sendall(b"streaming ")  # within the interval after the last: gathered
    await asyncio.sleep(0.2)
    assert outputs == [b"first"]
    sessions.input(session_id, b"x")
    assert shell.recv(16) == b"x"
    shell.sendall(b"x")  # the echo
    assert await after(2) == [b"first", b"streaming x"]
    await sessions.stop()


async def test_a_resize_racing_the_terminals_end_is_no_failure(host: FakeHost, updates: list[TerminalUpdate]) -> None:
    """An idle close (or the shell's exit) stopped the container just before a resize reached
    Docker: the owner hears `closed`, not `failed` for the resize."""
    sessions = sessions_with(host, updates)
    session_id = uuid.uuid4()
    await sessions.open(session_id, 1, 80, 24)
    (container,) = list(host.shells)
    host.shells.pop(container).close()  # the container stopped; the pump has not seen it yet
    await sessions.resize(session_id, 120, 40)
    for _ in range(100):
        if updates[-1].type != "opened":
            break
        await asyncio.sleep(0.05)
    assert [u.type for u in updates] == ["opened", "closed"]
    await sessions.stop()
