"""Web terminals: a shell in the site's image with the site directory at /site, driven over the bus.

    async with client.terminals.open(7, cols=100, rows=30) as term:   # waits for `opened`
        await term.input(b"ls -la\\n")
        await term.resize(120, 40)
        async for chunk in term.output():                            # bytes, until closed
            websocket.send(chunk)

The session's updates come through a queue of the user's own (`<prefix>terminal-<session_id>`,
exclusive) bound to `orchestrator.terminals` with the session's key, declared before the session
is opened so no output is missed. Terminal updates are not persistent: `seq` counts them, and
`lost` says how many never arrived (a broker restart mid-session). A session the orchestrator
refuses or ends in failure raises its typed error (`SiteNotFound`, `TerminalLimit`, ...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Self

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection

from orchestrator_client import publishing
from orchestrator_client.errors import ContractMismatch, InternalError, OrchestratorError, error_for
from orchestrator_contract import version
from orchestrator_contract.terminals import (
    MAX_TERMINAL_INPUT,
    TerminalClose,
    TerminalCommand,
    TerminalInput,
    TerminalOpen,
    TerminalResize,
    TerminalUpdate,
)

# Updates received and not read yet; past it the oldest output is dropped (and counted as lost).
MAX_BUFFERED_UPDATES = 4096


class Terminals:
    def __init__(
        self,
        connection: AbstractRobustConnection,
        commands: str,
        updates: str,
        user_id: str,
        prefix: str,
        timeout: float,
    ) -> None:
        self._connection = connection
        self._commands = commands
        self._updates = updates
        self._user_id = user_id
        self._prefix = prefix
        self._timeout = timeout

    def open(self, site_id: int, *, cols: int = 80, rows: int = 24, session_id: uuid.UUID | None = None) -> Terminal:
        """A session (`async with`): opened on entry (waiting for `opened`), closed on exit."""
        return Terminal(self, site_id, cols, rows, session_id or uuid.uuid4())


class Terminal:
    def __init__(self, terminals: Terminals, site_id: int, cols: int, rows: int, session_id: uuid.UUID) -> None:
        self._t = terminals
        self.site_id = site_id
        self.session_id = session_id
        self._size = (cols, rows)
        self._channel: AbstractChannel | None = None
        self._commands: AbstractExchange | None = None
        self._inbox: asyncio.Queue[TerminalUpdate] = asyncio.Queue(MAX_BUFFERED_UPDATES)
        self._next_seq = 0
        self.lost = 0
        """Updates that never arrived (gaps in `seq`) or were dropped unread."""
        self.ended: TerminalUpdate | None = None
        """The `closed` or `failed` update that ended the session."""
        self._mismatch: ContractMismatch | None = None

    async def __aenter__(self) -> Self:
        t = self._t
        self._channel = await t._connection.channel(publisher_confirms=True)
        try:
            async with publishing.refusals("a terminal session's queue"):
                queue = await self._channel.declare_queue(
                    f"{t._prefix}terminal-{self.session_id}", exclusive=True, auto_delete=True
                )
                await queue.bind(t._updates, f"terminal.{self.session_id}")
                await queue.consume(self._on_update, no_ack=True)
            self._commands = await self._channel.get_exchange(t._commands, ensure=False)
            cols, rows = self._size
            await self._send(TerminalOpen(session_id=self.session_id, site_id=self.site_id, cols=cols, rows=rows))
            async with asyncio.timeout(t._timeout):
                first = await self._inbox.get()
            if first.type != "opened":
                raise self._failure(first)
        except BaseException:
            if not self._channel.is_closed:
                await self._channel.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.ended is None:
                await self.close()
        finally:
            if self._channel is not None and not self._channel.is_closed:
                await self._channel.close()

    async def input(self, data: bytes | str) -> None:
        """Bytes typed by the user (a str is UTF-8), in order; a large paste goes in pieces."""
        raw = data.encode() if isinstance(data, str) else data
        for start in range(0, len(raw), MAX_TERMINAL_INPUT):
            piece = base64.b64encode(raw[start : start + MAX_TERMINAL_INPUT]).decode("ascii")
            await self._send(TerminalInput(session_id=self.session_id, data=piece))

    async def resize(self, cols: int, rows: int) -> None:
        await self._send(TerminalResize(session_id=self.session_id, cols=cols, rows=rows))

    async def close(self, timeout: float | None = None) -> None:
        """End the session and wait (at most `timeout`) for the orchestrator's `closed`."""
        if self.ended is not None:
            return
        await self._send(TerminalClose(session_id=self.session_id))
        # A `failed` while closing is closed all the same.
        with contextlib.suppress(TimeoutError, OrchestratorError):
            async with asyncio.timeout(timeout or self._t._timeout):
                while await self.read() is not None:
                    pass

    async def read(self, timeout: float | None = None) -> bytes | None:
        """The next output (None once the session is closed); the session's error if it failed;
        TimeoutError if nothing came within `timeout` seconds (None: wait)."""
        while self.ended is None:
            async with asyncio.timeout(timeout):
                update = await self._inbox.get()
            if update.type == "output":
                return base64.b64decode(update.data or "")
            if update.type in ("closed", "failed"):
                self.ended = update
                if update.type == "failed":
                    raise self._failure(update)
        return None

    async def read_until(self, marker: bytes, timeout: float) -> bytes:
        """Output until (and with) `marker`; TimeoutError if it did not come within `timeout`."""
        seen = b""
        async with asyncio.timeout(timeout):
            while marker not in seen:
                chunk = await self.read()
                if chunk is None:
                    raise EOFError(f"the session closed before {marker!r}: {self.ended and self.ended.reason}")
                seen += chunk
        return seen

    async def output(self) -> AsyncIterator[bytes]:
        """Every output chunk, until the session is closed."""
        while (chunk := await self.read()) is not None:
            yield chunk

    async def _send(self, command: TerminalCommand) -> None:
        if self._commands is None:
            raise RuntimeError("enter the session first: `async with client.terminals.open(...) as term:`")
        msg = publishing.message(
            command.model_dump_json().encode(),
            user_id=self._t._user_id,
            persistent=False,
            headers={version.HEADER: version.VERSION},
        )
        await publishing.publish(self._commands, command.type, msg, mandatory=True, timeout=self._t._timeout)

    async def _on_update(self, message: AbstractIncomingMessage) -> None:
        theirs = (message.headers or {}).get(version.HEADER)
        if version.compatible(theirs):
            update = TerminalUpdate.model_validate_json(message.body)
        else:
            self._mismatch = ContractMismatch(
                f"a terminal update of contract {theirs!r}; this client: {version.VERSION}"
            )
            update = TerminalUpdate(session_id=self.session_id, type="failed", seq=self._next_seq)
        if update.seq > self._next_seq:
            self.lost += update.seq - self._next_seq
        self._next_seq = max(self._next_seq, update.seq + 1)
        if self._inbox.full():
            self._inbox.get_nowait()
            self.lost += 1
        self._inbox.put_nowait(update)

    def _failure(self, update: TerminalUpdate) -> Exception:
        if self._mismatch is not None:
            return self._mismatch
        reason = update.reason or f"the terminal session {update.type}"
        if update.type == "failed":
            return error_for(update.code, reason) if update.code is not None else InternalError(reason)
        return EOFError(f"the terminal session closed: {reason}")
