"""The edge where bytes become typed events: parsing, authentication, and our message headers.

Pure functions over an `Envelope` (the parts of an AMQP delivery we use), so the rules are
unit-tested without a broker. Nothing past `parse_event` touches bytes or dicts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from orchestrator.errors import InvalidEvent, Unauthenticated
from orchestrator.events import INBOUND_TYPES, InboundEvent
from orchestrator.headers import ATTEMPTS, PUBLISHER, ROUTING_KEY

MAX_BODY = 1024 * 1024
_EVENT: TypeAdapter[InboundEvent] = TypeAdapter(InboundEvent)


@dataclass(frozen=True)
class Envelope:
    body: bytes
    exchange: str
    routing_key: str
    user_id: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def original_routing_key(self) -> str:
        return str(self.headers.get(ROUTING_KEY) or self.routing_key)

    @property
    def attempts(self) -> int:
        """Failed deliveries so far (through the delayed-retry queue)."""
        try:
            return int(self.headers.get(ATTEMPTS, 0))
        except (TypeError, ValueError):
            return 0


def authenticate(envelope: Envelope, *, inbound_exchange: str, requeue_exchange: str, allowed: list[str]) -> str:
    """The broker user who published the event, if it may; else Unauthenticated.

    RabbitMQ checks `user_id` against the publishing connection's user, so on the inbound exchange
    it is proof of the publisher. A message back from our delayed-retry queue arrives through the
    requeue exchange, where only the orchestrator's own user may write; it carries the publisher
    we authenticated on its first delivery.
    """
    if envelope.exchange == inbound_exchange:
        user = envelope.user_id
    elif envelope.exchange == requeue_exchange:
        user = envelope.headers.get(PUBLISHER)
    else:
        raise Unauthenticated(f"message arrived through an unexpected exchange {envelope.exchange!r}")
    if not user:
        raise Unauthenticated("message carries no user_id; Director must set it to its broker user")
    if user not in allowed:
        raise Unauthenticated(f"broker user {user!r} may not publish site events")
    return str(user)


def parse_event(body: bytes, routing_key: str) -> InboundEvent:
    """Bytes to a typed event, or InvalidEvent saying why (carrying what is readable of it)."""
    if len(body) > MAX_BODY:
        raise InvalidEvent(f"message body is larger than {MAX_BODY} bytes")
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidEvent(f"message body is not JSON: {exc!s:.200}") from None
    known = readable_parts(raw)
    if routing_key not in INBOUND_TYPES:
        raise InvalidEvent(f"unknown routing key {routing_key!r}", **known)
    if not isinstance(raw, dict) or raw.get("type") != routing_key:
        raise InvalidEvent(f"event type does not match the routing key {routing_key!r}", **known)
    try:
        # Strict: JSON types must be right ("5" is not a version), as the published schema says.
        return _EVENT.validate_json(body, strict=True)
    except ValidationError as exc:
        raise InvalidEvent(f"event does not match the schema: {describe(exc)}", **known) from None


def readable_parts(raw: object) -> dict[str, Any]:
    """Event id, site id and version of a possibly invalid event, where they are well-formed,
    so its `site.failed` still reaches the site's owner and correlates with Director's event."""
    if not isinstance(raw, dict):
        return {}
    event_id, version = raw.get("event_id"), raw.get("version")
    try:
        parsed_id = uuid.UUID(event_id) if isinstance(event_id, str) else None
    except ValueError:
        parsed_id = None
    return {
        "site_id": site_id_of(raw),
        "event_id": parsed_id,
        "version": version if isinstance(version, int) and not isinstance(version, bool) and version >= 1 else None,
    }


def site_id_of(raw: object) -> int | None:
    """The site id of a possibly invalid event."""
    if isinstance(raw, dict) and isinstance(raw.get("site"), dict):
        value = raw["site"].get("id")
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**31:
            return value
    return None


def describe(exc: ValidationError, limit: int = 1000) -> str:
    """Field paths and reasons, never input values: env values may be secrets."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:limit]
