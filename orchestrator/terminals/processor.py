"""Terminal commands as a queue's processor: carry each one out on the sessions, answer a refusal
with a `failed` update on the session's key.

Commands take no lane: aio-pika starts one task per delivery in delivery order, and input is
written to the TTY before anything is awaited, so keystrokes keep their order.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import assert_never

from orchestrator.bus.decoding import parse_command, session_id_of
from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import Completed, Failed, Outcome, Outgoing, Received
from orchestrator.errors import OrchestratorError, TerminalRefused
from orchestrator.terminals.sessions import TerminalSessions
from orchestrator_contract import version as contract
from orchestrator_contract.terminals import (
    TerminalClose,
    TerminalCommand,
    TerminalInput,
    TerminalOpen,
    TerminalResize,
    TerminalUpdate,
)


class TerminalCommands:
    def __init__(self, sessions: TerminalSessions, updates_exchange: str) -> None:
        self.sessions = sessions
        self.updates_exchange = updates_exchange

    def parse(self, envelope: Envelope) -> TerminalCommand:
        return parse_command(envelope.body, envelope.routing_key, envelope.headers.get(contract.HEADER))

    def lane(self, message: TerminalCommand | None, error: OrchestratorError | None) -> Hashable | None:
        return None

    async def process(self, message: TerminalCommand, received: Received) -> Outcome:
        facts = _facts(message)
        match message:
            case TerminalInput():
                self.sessions.input(message.session_id, message.raw)
                return Completed(facts=facts, quiet=True)
            case TerminalOpen():
                await self.sessions.open(message.session_id, message.site_id, message.cols, message.rows)
            case TerminalResize():
                await self.sessions.resize(message.session_id, message.cols, message.rows)
            case TerminalClose():
                await self.sessions.close(message.session_id)
            case _:
                assert_never(message)
        return Completed(facts=facts, outcome=message.type)

    def refused(
        self, error: OrchestratorError, envelope: Envelope, publisher: str | None, message: TerminalCommand | None
    ) -> Failed:
        if message is not None and not isinstance(error, TerminalRefused):
            # Docker down, a bad site directory, a bug: answered now, never replayed later.
            error = TerminalRefused(error.message, code=error.code)
        session_id = message.session_id if message is not None else session_id_of(envelope.body)
        result = None
        # A stranger's message gets no answer; an invalid one from Director does, when it names a session.
        if session_id is not None and publisher is not None:
            update = TerminalUpdate(
                session_id=session_id,
                type="failed",
                seq=self.sessions.next_seq(session_id),
                reason=error.message,
                code=error.code,
            )
            result = Outgoing(
                self.updates_exchange,
                update.routing_key,
                update.model_dump_json().encode(),
                persistent=False,
                mandatory=False,
            )
        return Failed(error, result, publisher, _facts(message) if message is not None else {})


def _facts(command: TerminalCommand) -> dict[str, str]:
    facts = {"session_id": str(command.session_id), "command": command.type}
    if isinstance(command, TerminalOpen):
        facts["site_id"] = str(command.site_id)
    return facts
