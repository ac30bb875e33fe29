"""Web terminals: Director bridges a browser's websocket to the bus. Commands arrive on
`director.terminals` (routing key = command type); what happens in a session goes back on
`orchestrator.terminals` with routing key `terminal.<session_id>`."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field

from orchestrator_contract.base import Base64Data, Model, SiteId
from orchestrator_contract.codes import ErrorCode

# Bytes typed in one `terminal.input`; Director splits a larger paste.
MAX_TERMINAL_INPUT = 16 * 1024
Dimension = Annotated[int, Field(ge=1, le=1000)]


def _input_size(value: str) -> str:
    if len(base64.b64decode(value)) > MAX_TERMINAL_INPUT:
        raise ValueError(f"at most {MAX_TERMINAL_INPUT} bytes of input per message")
    return value


class _Command(Model):
    session_id: uuid.UUID = Field(description="Chosen by Director for the session (a UUID).")


class TerminalOpen(_Command):
    """Open a shell in the site's image with the site directory at /site."""

    type: Literal["terminal.open"] = "terminal.open"
    site_id: SiteId
    cols: Dimension = 80
    rows: Dimension = 24


class TerminalInput(_Command):
    """Bytes typed by the user (base64), delivered to the shell in order."""

    type: Literal["terminal.input"] = "terminal.input"
    data: Annotated[Base64Data, Field(max_length=4 * ((MAX_TERMINAL_INPUT + 2) // 3)), AfterValidator(_input_size)]

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.data)


class TerminalResize(_Command):
    type: Literal["terminal.resize"] = "terminal.resize"
    cols: Dimension
    rows: Dimension


class TerminalClose(_Command):
    type: Literal["terminal.close"] = "terminal.close"


TerminalCommand = TerminalOpen | TerminalInput | TerminalResize | TerminalClose
TERMINAL_COMMANDS: dict[str, type[TerminalCommand]] = {
    "terminal.open": TerminalOpen,
    "terminal.input": TerminalInput,
    "terminal.resize": TerminalResize,
    "terminal.close": TerminalClose,
}

TerminalUpdateType = Literal["opened", "output", "closed", "failed"]


class TerminalUpdate(Model):
    """What happened in a session, published with routing key `terminal.<session_id>`.

    `seq` counts a session's events from 0 in publish order: output is delivered in order, and a
    gap means a message was lost (terminal events are not persistent).
    """

    session_id: uuid.UUID
    type: TerminalUpdateType
    seq: int = Field(ge=0)
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    data: Base64Data | None = Field(default=None, description="`output`: bytes from the terminal, base64.")
    reason: str | None = Field(default=None, description="`closed` and `failed`: why.")
    code: ErrorCode | None = Field(default=None, description="`failed`: machine-readable code.")

    @property
    def routing_key(self) -> str:
        return f"terminal.{self.session_id}"
