"""Who sent a delivery, and which of its headers we may believe: the trust rules of every queue.

Pure functions over an `Envelope` (the parts of an AMQP delivery we use), so the rules are
unit-tested without a broker; `bus.broker.to_envelope` builds one from an aio-pika message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import Unauthenticated
from orchestrator_contract.headers import ATTEMPTS, PREFIX, PUBLISHER, ROUTING_KEY

# A retry count can only grow to the configured attempts; anything beyond is not ours.
MAX_ATTEMPTS_SEEN = 1000


@dataclass(frozen=True)
class Envelope:
    body: bytes
    exchange: str
    routing_key: str
    user_id: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def original_routing_key(self) -> str:
        return str(self.headers.get(ROUTING_KEY) or self.routing_key)

    @property
    def attempts(self) -> int:
        """Failed deliveries so far (through the delayed-retry queue)."""
        try:
            value = int(self.headers.get(ATTEMPTS, 0))
        except (TypeError, ValueError):
            return 0
        return max(0, min(value, MAX_ATTEMPTS_SEEN))


def believed_headers(headers: Mapping[str, Any], exchange: str, requeue_exchange: str | None) -> dict[str, Any]:
    """The headers we may act on. Ours (attempts, original routing key and exchange, publisher)
    are believed only on messages back through our requeue exchange, where only the orchestrator
    may publish; on any other exchange they are a publisher's forgery and are dropped."""
    if exchange == requeue_exchange:
        return dict(headers)
    return {k: v for k, v in headers.items() if not k.lower().startswith(PREFIX)}


def authenticate(
    envelope: Envelope, inbound_exchange: str, requeue_exchange: str | None, allowed: Sequence[str]
) -> str:
    """The broker user who published the event, if it may; else Unauthenticated.

    RabbitMQ checks `user_id` against the publishing connection's user, so on the inbound exchange
    it is proof of the publisher. A message back from our delayed-retry queue arrives through the
    requeue exchange, where only the orchestrator's own user may write; it carries the publisher
    we authenticated on its first delivery.
    """
    if envelope.exchange == inbound_exchange:
        user = envelope.user_id
    elif requeue_exchange is not None and envelope.exchange == requeue_exchange:
        user = envelope.headers.get(PUBLISHER)
    else:
        raise Unauthenticated(f"message arrived through an unexpected exchange {envelope.exchange!r}")
    if not user:
        raise Unauthenticated("message carries no user_id; Director must set it to its broker user")
    if user not in allowed:
        raise Unauthenticated(f"broker user {user!r} may not publish to {inbound_exchange}")
    return str(user)
