"""Processing of one terminal command: authenticate, parse, carry it out on the sessions, and
settle it like any other delivery (see `settlement`).

Commands are not serialized behind a lock: aio-pika starts one task per delivery in delivery
order, and input is written to the TTY before anything is awaited, so keystrokes keep their order.
"""

from __future__ import annotations

import logging
from typing import assert_never

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from orchestrator.bus import broker
from orchestrator.bus.settlement import Completed, Delivery, Failed, Outcome, Outgoing, Settler
from orchestrator.config import Settings
from orchestrator.contract import decoding as env
from orchestrator.contract.sites import (
    TerminalClose,
    TerminalCommand,
    TerminalEvent,
    TerminalInput,
    TerminalOpen,
    TerminalResize,
)
from orchestrator.errors import OrchestratorError, PermanentError, TerminalRefused, Unauthenticated
from orchestrator.logs import fields
from orchestrator.terminals.sessions import TerminalSessions

log = logging.getLogger("orchestrator.terminalcommands")


class TerminalCommands:
    def __init__(
        self, settings: Settings, sessions: TerminalSessions, settler: Settler, events: AbstractExchange
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.settler = settler
        self.events = events

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        delivery = Delivery(message, broker.to_envelope(message, None))
        envelope = delivery.envelope
        publisher: str | None = None
        try:
            publisher = env.authenticate(
                envelope,
                inbound_exchange=self.settings.terminal_exchange,
                requeue_exchange=None,
                allowed=self.settings.allowed_publishers,
            )
            command = env.parse_command(envelope.body, envelope.routing_key)
        except PermanentError as error:
            await self.settler.settle(delivery, self._failure(delivery, error, publisher))
            return
        await self.settler.settle(delivery, await self._carry_out(delivery, command, publisher))

    async def _carry_out(self, delivery: Delivery, command: TerminalCommand, publisher: str) -> Outcome:
        facts = {"session_id": str(command.session_id), "command": command.type}
        try:
            match command:
                case TerminalInput():
                    self.sessions.input(command.session_id, command.raw)
                    return Completed(facts=facts, quiet=True)
                case TerminalOpen():
                    await self.sessions.open(command.session_id, command.site_id, command.cols, command.rows)
                    facts["site_id"] = str(command.site_id)
                case TerminalResize():
                    await self.sessions.resize(command.session_id, command.cols, command.rows)
                case TerminalClose():
                    await self.sessions.close(command.session_id)
                case _:
                    assert_never(command)
        except TerminalRefused as error:
            return self._failure(delivery, error, publisher, facts)
        except OrchestratorError as error:
            # Docker down, a bad site directory: answered now, never replayed later.
            refused = TerminalRefused(error.message, code=error.code)
            return self._failure(delivery, refused, publisher, facts)
        except Exception as exc:  # a bug: keep serving, tell the session's owner
            log.exception("unexpected error", extra=fields(**facts))
            return self._failure(delivery, TerminalRefused(f"unexpected error: {exc!r}"), publisher, facts)
        return Completed(facts=facts, outcome=command.type)

    def _failure(
        self,
        delivery: Delivery,
        error: OrchestratorError,
        publisher: str | None,
        facts: dict[str, str] | None = None,
    ) -> Failed:
        session_id = env.session_id_of(delivery.envelope.body)
        result = None
        # A stranger's message gets no answer; an invalid one from Director does, when it names a session.
        if session_id is not None and not isinstance(error, Unauthenticated):
            seq = self.sessions.next_seq(session_id)
            event = TerminalEvent(session_id=session_id, type="failed", seq=seq, reason=error.message, code=error.code)
            result = Outgoing(
                self.events, event.routing_key, event.model_dump_json().encode(), persistent=False, mandatory=False
            )
        return Failed(error, result, publisher, facts or {})
