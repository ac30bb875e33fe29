"""Terminal sessions: a shell container per session, its TTY bridged to the bus.

`terminals.host.TerminalHost` is the Docker edge (session containers, attach, resize, removal by
label); `TerminalSessions` keeps the open sessions of this process: it writes input to a session's TTY,
and one pump per session publishes the TTY's output in order, gathered into messages of a few
milliseconds or KiB, then `closed` once the container is gone. A session's events come only from
its pump (after `opened`), so `closed` always follows the last output.

Terminal data is never logged: the containers have no log driver and our logs name sessions only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import Settings
from orchestrator.errors import DockerConflict, NotFound, OrchestratorError, TerminalRefused
from orchestrator.logging_setup import fields
from orchestrator.sites.protocols import SiteDirsPort
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.terminals import container as terminalspec
from orchestrator.terminals.cgroup import TerminalsCap
from orchestrator.terminals.host import TerminalHost
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.sites import service_name
from orchestrator_contract.terminals import TerminalUpdate, TerminalUpdateType

log = logging.getLogger("orchestrator.terminals")

Emit = Callable[[TerminalUpdate], Awaitable[None]]
# How often our own containers that no session holds are looked for.
STRAY_LOOK_SECONDS = 60.0
# Input written but not yet taken by the shell (a program that stopped reading): past this, refuse.
MAX_UNREAD_INPUT = 1024 * 1024


@dataclass
class Session:
    id: uuid.UUID
    site_id: int
    container_id: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float = field(default_factory=time.monotonic)
    last_input: float = field(default_factory=time.monotonic)
    seq: int = 0
    # Input was written since output last left: the next output is its answer (an echo, a
    # redraw) and leaves as soon as it is read, never held for the batch interval.
    answer_due: bool = False
    reason: str | None = None  # why we closed it; None: the shell ended by itself
    pump: asyncio.Task[None] | None = None

    def event(self, type_: TerminalUpdateType, **values: Any) -> TerminalUpdate:
        event = TerminalUpdate(session_id=self.id, type=type_, seq=self.seq, **values)
        self.seq += 1
        return event


class TerminalSessions:
    def __init__(self, settings: Settings, host: TerminalHost, sitedirs: SiteDirsPort, emit: Emit) -> None:
        self.settings = settings
        self.runtime, self.admission = SiteRuntime.of(settings), Admission.of(settings)
        self.cap = TerminalsCap.of(settings)
        self.host = host
        self.sitedirs = sitedirs
        self.emit = emit
        self.owner = uuid.uuid4().hex  # this process
        self._sessions: dict[uuid.UUID, Session] = {}
        # Opens under way, reserved before their first await (session id -> site id): a racing open
        # of the same id is one session, and every open counts against the limits at once.
        self._opening: dict[uuid.UUID, int] = {}
        self._pumps: set[asyncio.Task[None]] = set()  # strong references to the running pumps
        self._sweeper: asyncio.Task[None] | None = None
        self._orphans: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, active: asyncio.Event) -> None:
        """Watch for idle sessions; once this process takes commands (`active`), close what a
        previous one left behind. A standby must not: the active process holds those sessions."""
        self._sweeper = asyncio.create_task(self._sweep())
        self._orphans = asyncio.create_task(self._close_orphans(active))

    async def _close_orphans(self, active: asyncio.Event) -> None:
        await active.wait()
        try:
            found = await self.host.sessions()
        except OrchestratorError as exc:
            log.warning("could not look for orphaned terminals", extra=fields(error=exc.message))
            return
        for container_id, session_id, owner in found:
            if owner == self.owner:
                continue
            with contextlib.suppress(OrchestratorError):
                await self.host.remove(container_id)
            with contextlib.suppress(ValueError):
                orphan = uuid.UUID(session_id)
                await self.emit(
                    TerminalUpdate(session_id=orphan, type="closed", seq=0, reason="orchestrator restarted")
                )
            log.info("removed an orphaned terminal", extra=fields(session_id=session_id))

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._sweeper, self._orphans):
            if task is not None:
                task.cancel()
        closing = [self.close(s, "orchestrator stopped") for s in list(self._sessions)]
        for outcome in await asyncio.gather(*closing, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("could not close a terminal on stop", extra=fields(error=repr(outcome)))

    async def open(self, session_id: uuid.UUID, site_id: int, cols: int, rows: int) -> None:
        known = self._sessions.get(session_id)
        holder = known.site_id if known is not None else self._opening.get(session_id)
        if holder is not None:
            if holder != site_id:
                raise TerminalRefused(f"session {session_id} is another site's", code=ErrorCode.INVALID_EVENT)
            return  # a redelivered or repeated open: the session is there, or on its way
        if self._count(site_id) >= self.settings.terminal_max_per_site:
            raise TerminalRefused(
                f"site {site_id} has {self.settings.terminal_max_per_site} open terminals already",
                code=ErrorCode.TERMINAL_LIMIT,
            )
        if len(self._sessions) + len(self._opening) >= self.settings.terminal_max_total:
            raise TerminalRefused(
                f"{self.settings.terminal_max_total} terminals are open on this orchestrator; try again later",
                code=ErrorCode.TERMINAL_LIMIT,
            )
        self._opening[session_id] = site_id
        try:
            service = await self.host.site_service(site_id)
            if service is None:
                raise NotFound(f"site {site_id} has no service (it was never deployed, or was deleted)")
            name = service_name(site_id)
            if not await self.sitedirs.check(name):
                raise NotFound(f"site {site_id} has no directory (it is being deleted)")
            container = terminalspec.session_container(
                service, site_id, session_id, self.sitedirs.path(name), self.runtime, self.admission, self.owner,
                self.cap,
            )  # fmt: skip
            container_id, tty = await self.host.start(container, cols, rows)
            try:
                # A delete that ran meanwhile closed the site's sessions before this one existed.
                if self._stopping or await self.host.site_service(site_id) is None:
                    raise NotFound(f"site {site_id} was deleted while its terminal opened")
                reader, writer = await asyncio.open_connection(sock=tty)
            except BaseException:
                tty.close()
                await self.host.remove(container_id)
                raise
        finally:
            del self._opening[session_id]
        session = Session(session_id, site_id, container_id, reader, writer)
        self._sessions[session_id] = session
        await self.emit(session.event("opened"))
        session.pump = asyncio.create_task(self._pump(session))
        self._pumps.add(session.pump)
        session.pump.add_done_callback(self._pumps.discard)
        log.info("terminal opened", extra=fields(session_id=str(session_id), site_id=site_id, image=container.image))

    def input(self, session_id: uuid.UUID, data: bytes) -> None:
        """Write at once, before any await: inputs are written in the order they were delivered."""
        session = self._get(session_id)
        if session.writer.transport.get_write_buffer_size() > MAX_UNREAD_INPUT:
            raise TerminalRefused(
                "the terminal is not reading its input; wait and send it again", code=ErrorCode.TERMINAL_BUSY
            )
        session.last_input = time.monotonic()
        session.answer_due = True
        session.writer.write(data)

    async def resize(self, session_id: uuid.UUID, cols: int, rows: int) -> None:
        session = self._get(session_id)
        if session.reason:  # being closed: its end is said as `closed`, with the reason
            return
        try:
            await self.host.resize(session.container_id, cols, rows)
        except DockerConflict:
            # Its container stopped between the command and Docker (the shell exited, or an idle
            # close, the lifetime or the site's deletion got there first): the pump says `closed`
            # for it; a resize of a TTY that has ended is nothing to fail over.
            log.info("a resize found its terminal ended", extra=fields(session_id=str(session_id)))

    async def close(self, session_id: uuid.UUID, reason: str = "closed by the user") -> None:
        session = self._get(session_id)
        session.reason = session.reason or reason
        await self.host.remove(session.container_id)  # the pump then sees the end and says `closed`
        if session.pump is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.shield(session.pump)

    def next_seq(self, session_id: uuid.UUID) -> int:
        """The `seq` of an event about the session said outside its pump (a refused command); 0
        when there is no such session."""
        session = self._sessions.get(session_id)
        if session is None:
            return 0
        session.seq += 1
        return session.seq - 1

    async def _remove_strays(self) -> None:
        """Our own session containers that no session holds (an open that failed half way):
        removed, so nothing runs that nobody can reach or close."""
        try:
            found = await self.host.sessions()
        except OrchestratorError:
            return
        held = {s.container_id for s in self._sessions.values()}
        opening = {str(session_id) for session_id in self._opening}
        for container_id, session_id, owner in found:
            if owner == self.owner and container_id not in held and session_id not in opening:
                with contextlib.suppress(OrchestratorError):
                    await self.host.remove(container_id)
                log.info("removed a stray terminal container", extra=fields(session_id=session_id))

    def _get(self, session_id: uuid.UUID) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise TerminalRefused(f"no open terminal session {session_id}", code=ErrorCode.UNKNOWN_SESSION)
        return session

    def _count(self, site_id: int) -> int:
        opening = sum(1 for site in self._opening.values() if site == site_id)
        return opening + sum(1 for s in self._sessions.values() if s.site_id == site_id)

    async def _pump(self, session: Session) -> None:
        """Output leaves at once when it answers input (a keystroke's echo) or when the last
        message left a while ago, and is gathered until a batch interval after the last one while
        output streams (at most one message per interval, per `terminal_batch_bytes` or per input,
        never one per byte).

        A session may send at most `terminal_output_bytes_per_second` (a second's worth at once):
        past it the pump stops reading for a while, so the TTY fills and the shell's program waits,
        as on a slow link. Nothing is dropped, and a runaway `yes` costs the bus and this loop the
        budget, not a core."""
        loop = asyncio.get_running_loop()
        limit, interval = self.settings.terminal_batch_bytes, self.settings.terminal_batch_seconds
        budget = float(self.settings.terminal_output_bytes_per_second)
        allowance, counted = budget, loop.time()
        last = -interval
        try:
            while chunk := await session.reader.read(limit):
                batch = bytearray(chunk)
                deadline = last + interval
                ended = False
                while len(batch) < limit and not session.answer_due and (left := deadline - loop.time()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            more = await session.reader.read(limit - len(batch))
                    except TimeoutError:
                        break
                    if not more:
                        ended = True
                        break
                    batch += more
                session.answer_due = False
                await self.emit(session.event("output", data=base64.b64encode(batch).decode("ascii")))
                last = loop.time()
                if ended:
                    break
                allowance = min(budget, allowance + (last - counted) * budget) - len(batch)
                counted = last
                if allowance < 0:
                    await asyncio.sleep(-allowance / budget)  # not reading: the shell waits
                if session.reason is not None:
                    break  # we are closing it: what it still had to say is not wanted
        except (ConnectionError, OSError) as exc:
            log.warning("terminal connection lost", extra=fields(session_id=str(session.id), error=repr(exc)))
        finally:
            if self._sessions.get(session.id) is session:  # only this session, never a successor
                del self._sessions[session.id]
            session.writer.close()
            with contextlib.suppress(OrchestratorError):
                await self.host.remove(session.container_id)
            await self.emit(session.event("closed", reason=session.reason or "the shell ended"))
            log.info("terminal closed", extra=fields(session_id=str(session.id), reason=session.reason or "ended"))

    async def _sweep(self) -> None:
        idle, lifetime = self.settings.terminal_idle_seconds, self.settings.terminal_max_lifetime_seconds
        next_stray_look = time.monotonic() + STRAY_LOOK_SECONDS
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            now = time.monotonic()
            if now >= next_stray_look:
                next_stray_look = now + STRAY_LOOK_SECONDS
                await self._remove_strays()
            for session in list(self._sessions.values()):
                if now - session.last_input > idle:
                    reason = f"idle for {idle:g} s"
                elif now - session.opened > lifetime:
                    reason = f"open for {lifetime:g} s, the longest a session lives"
                else:
                    continue
                with contextlib.suppress(OrchestratorError):
                    await self.close(session.id, reason)
