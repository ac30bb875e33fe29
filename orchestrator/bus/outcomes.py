"""What processing one delivery came to, as plain data: the only part of the bus a processor sees.

A processor returns an `Outcome`; the settler (`bus.settlement`) carries it out. Nothing here knows
aio-pika: exchanges are named, and the settler finds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.bus.envelope import Envelope
from orchestrator.errors import OrchestratorError

DEFAULT_EXCHANGE = ""  # replies go to the default exchange, routing key = the requester's queue


@dataclass(frozen=True)
class Requester:
    """Who asked, as a request names it: where the answer goes, and what it is tagged with."""

    reply_to: str
    correlation_id: str


@dataclass(frozen=True)
class Received:
    """A delivery that passed authentication: its envelope and its proven publisher."""

    envelope: Envelope
    publisher: str


@dataclass(frozen=True)
class Outgoing:
    """A message to publish (with confirms) as part of settling a delivery."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None
    correlation_id: str | None = None
    persistent: bool = True
    mandatory: bool = True
    # False: sent on the settler's channel without confirms, before the ack, not waited for (a
    # reply to a request: its requester retries a lost one; a confirm would only add a round trip).
    confirmed: bool = True


@dataclass(frozen=True)
class Completed:
    """Handled: publish `outgoing`, then ack. `facts` go into the delivery's one log line."""

    outgoing: Sequence[Outgoing] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "completed"
    quiet: bool = False  # not logged (a terminal's keystrokes)


@dataclass(frozen=True)
class Failed:
    """Not handled. `result` tells the publisher (None: nobody may be told, e.g. a stranger's
    message); `publisher` is the proven publisher, kept on the copy so a replay may trust it."""

    error: OrchestratorError
    result: Outgoing | None = None
    publisher: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


Outcome = Completed | Failed
