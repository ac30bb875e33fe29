"""Terminal sessions as Director's web layer drives them, as the `director` user: commands on
`director.terminals`, a session's updates read from `orchestrator.terminals` through a queue of
Director's own (`director.replies.terminal-<session_id>`) bound with the session's key."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from harness.broker import connected
from orchestrator_contract.terminals import TerminalUpdate

COMMANDS = "director.terminals"
EVENTS = "orchestrator.terminals"
SESSION_LABEL = "com.director.terminal-session"


class Terminal:
    """One session as Director sees it: send commands, read the events in `seq` order."""

    def __init__(self, channel: Any, exchange: Any, session_id: uuid.UUID) -> None:
        self.channel = channel
        self.exchange = exchange
        self.session_id = session_id
        self.events: list[TerminalUpdate] = []
        self._changed = asyncio.Condition()

    async def listen(self, events_exchange: Any) -> None:
        queue = await self.channel.declare_queue(
            f"director.replies.terminal-{self.session_id}", exclusive=True, auto_delete=True
        )
        await queue.bind(events_exchange, f"terminal.{self.session_id}")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with self._changed:
            self.events.append(TerminalUpdate.model_validate_json(message.body))
            self._changed.notify_all()

    async def send(self, command: str, user_id: str = "director", **body: Any) -> None:
        payload = json.dumps({"session_id": str(self.session_id), **body}).encode()
        await self.exchange.publish(
            aio_pika.Message(payload, content_type="application/json", user_id=user_id), f"terminal.{command}"
        )

    async def type(self, text: str) -> None:
        await self.send("input", data=base64.b64encode(text.encode()).decode())

    @property
    def output(self) -> bytes:
        return b"".join(base64.b64decode(e.data or "") for e in self.events if e.type == "output")

    async def wait(self, predicate: Any, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def wait_type(self, type_: str, timeout: float = 30) -> TerminalUpdate:
        await self.wait(lambda: any(e.type == type_ for e in self.events), timeout)
        return next(e for e in self.events if e.type == type_)

    async def wait_output(self, text: bytes, timeout: float = 30) -> None:
        await self.wait(lambda: text in self.output, timeout)


@dataclass
class TerminalBus:
    """Director's publisher on the commands exchange and a listener on the updates exchange."""

    listener: Any
    commands: Any
    updates: Any

    async def session(self, session_id: uuid.UUID | None = None) -> Terminal:
        """A session (not opened yet) whose updates are being listened to."""
        terminal = Terminal(self.listener, self.commands, session_id or uuid.uuid4())
        await terminal.listen(self.updates)
        return terminal


@contextlib.asynccontextmanager
async def terminal_bus(vhost: str) -> AsyncIterator[TerminalBus]:
    async with connected("director", vhost) as director:
        publisher = await director.channel(publisher_confirms=True)
        commands = await publisher.get_exchange(COMMANDS, ensure=False)
        listener = await director.channel()
        updates = await listener.get_exchange(EVENTS, ensure=False)
        yield TerminalBus(listener, commands, updates)
