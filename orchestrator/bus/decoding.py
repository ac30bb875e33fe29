"""Bytes into typed messages: the one place where a body becomes a site event, a terminal command
or a file request, or an `InvalidEvent` saying why (with whatever of it was readable). A message
of another major version of the contract (its `contract-version` header) is refused here too.

Pure functions, unit-tested without a broker. Nothing past this edge touches bytes or dicts.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from orchestrator.errors import InvalidEvent, InvalidRequest
from orchestrator_contract import version as contract
from orchestrator_contract.databases import DATABASE_REQUESTS, MAX_SQL, DatabaseRequest
from orchestrator_contract.files import FILE_REQUESTS, MAX_CHUNK_BYTES, FileRequest
from orchestrator_contract.sites import MAX_VERSION, SITE_EVENT_TYPES, SiteEvent
from orchestrator_contract.terminals import TERMINAL_COMMANDS, TerminalCommand

MAX_BODY = 1024 * 1024
# Typical events are a few KiB; larger ones are parsed off the event loop.
PARSE_ON_LOOP_BYTES = 64 * 1024
# No object in a well-formed event has more members (env: at most 500); refusing larger ones before
# validation keeps a hostile body from costing a validator call per member.
MAX_MEMBERS = 1000
_EVENT: TypeAdapter[SiteEvent] = TypeAdapter(SiteEvent)


def unreadable_version(contract_version: object) -> str | None:
    """Why a message whose `contract-version` header is `contract_version` (None: none) cannot
    be read: another major version of the contract. None when it can."""
    if contract.compatible(contract_version):
        return None
    shown = contract_version.decode(errors="replace") if isinstance(contract_version, bytes) else contract_version
    return f"contract version {str(shown)[:40]!r} is not this orchestrator's ({contract.MAJOR}.x, {contract.VERSION})"


def parse_event(body: bytes, routing_key: str, contract_version: object = None) -> SiteEvent:
    """Bytes to a typed event, or InvalidEvent saying why (carrying what is readable of it);
    `contract_version`: the message's `contract-version` header."""
    if len(body) > MAX_BODY:
        raise InvalidEvent(f"message body is larger than {MAX_BODY} bytes")
    shape = _Shape()
    try:
        raw = json.loads(body, object_pairs_hook=shape.members)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers past Python's digit limit.
        raise InvalidEvent(f"message body is not JSON: {exc!s:.200}") from None
    known = readable_parts(raw)
    if unreadable := unreadable_version(contract_version):
        raise InvalidEvent(unreadable, **known)
    if shape.problem:
        raise InvalidEvent(shape.problem, **known)
    if routing_key not in SITE_EVENT_TYPES:
        raise InvalidEvent(f"unknown routing key {routing_key!r}", **known)
    if not isinstance(raw, dict) or raw.get("type") != routing_key:
        raise InvalidEvent(f"event type does not match the routing key {routing_key!r}", **known)
    try:
        # Strict: JSON types must be right ("5" is not a version), as the published schema says.
        return _EVENT.validate_json(body, strict=True)
    except ValidationError as exc:
        raise InvalidEvent(f"event does not match the schema: {describe(exc)}", **known) from None
    except ValueError as exc:  # pydantic's own int limits; never a bare exception past this edge
        raise InvalidEvent(f"event does not match the schema: {exc!s:.200}", **known) from None


# A terminal command is a few hundred bytes; input is at most 16 KiB, base64.
MAX_COMMAND_BODY = 64 * 1024


def parse_command(body: bytes, routing_key: str, contract_version: object = None) -> TerminalCommand:
    """Bytes to a typed terminal command (the routing key names it), or InvalidEvent."""
    return parse_request(
        body,
        routing_key,
        contract_version,
        what="terminal command",
        limit=MAX_COMMAND_BODY,
        models=TERMINAL_COMMANDS,
        error=InvalidEvent,
    )


R = TypeVar("R", bound=BaseModel)

# A file request is small, but for a write chunk: at most the largest chunk, base64, and its fields.
MAX_FILE_REQUEST_BODY = 4 * ((MAX_CHUNK_BYTES + 2) // 3) + 64 * 1024


def parse_request(
    body: bytes,
    routing_key: str,
    contract_version: object,
    *,
    what: str,
    limit: int,
    models: Mapping[str, type[R]],
    error: type[InvalidEvent] = InvalidRequest,
) -> R:
    """Bytes to the typed request `models` names by routing key, or `error`: one reading of a
    request (terminal commands, files and logs, databases, metrics) whatever its kind; `what`
    names the kind in the error, `limit` bounds the body."""
    if unreadable := unreadable_version(contract_version):
        raise error(unreadable)
    if len(body) > limit:
        raise error(f"{what} is larger than {limit} bytes")
    model = models.get(routing_key)
    if model is None:
        raise error(f"unknown routing key {routing_key!r}")
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise error(f"{routing_key} does not match the schema: {describe(exc)}") from None
    except ValueError as exc:
        raise error(f"{routing_key} does not match the schema: {exc!s:.200}") from None


def parse_file_request(body: bytes, routing_key: str, contract_version: object = None) -> FileRequest:
    """Bytes to a typed file or log request (the routing key names it), or InvalidRequest."""
    return parse_request(
        body, routing_key, contract_version, what="file request", limit=MAX_FILE_REQUEST_BODY, models=FILE_REQUESTS
    )


MAX_DATABASE_REQUEST_BODY = MAX_SQL + 4096


def parse_database_request(body: bytes, routing_key: str, contract_version: object = None) -> DatabaseRequest:
    """Bytes to a typed database request (the routing key names it), or InvalidRequest."""
    return parse_request(
        body,
        routing_key,
        contract_version,
        what="database request",
        limit=MAX_DATABASE_REQUEST_BODY,
        models=DATABASE_REQUESTS,
    )


def session_id_of(body: bytes) -> uuid.UUID | None:
    """The session id of a possibly invalid terminal command."""
    try:
        raw = json.loads(body) if len(body) <= MAX_COMMAND_BODY else None
    except (ValueError, RecursionError):
        return None
    value = raw.get("session_id") if isinstance(raw, dict) else None
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


class _Shape:
    """Watches objects as the JSON parser builds them: a duplicate member would silently replace
    an earlier one (which one Director meant is unknowable), and a huge object is refused before
    any validation work."""

    def __init__(self) -> None:
        self.problem = ""

    def members(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len(pairs) > MAX_MEMBERS:
            self.problem = self.problem or f"an object in the event has more than {MAX_MEMBERS} members"
            return {}
        built = dict(pairs)
        if len(built) != len(pairs):
            self.problem = self.problem or "an object in the event has a duplicate member name"
        return built


def readable_parts(raw: object) -> dict[str, Any]:
    """Event id, site id and version of a possibly invalid event, where they are well-formed,
    so its `site.failed` still reaches the site's owner and correlates with Director's event."""
    if not isinstance(raw, dict):
        return {}
    event_id, version = raw.get("event_id"), raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        version = None
    try:
        parsed_id = uuid.UUID(event_id) if isinstance(event_id, str) else None
    except ValueError:
        parsed_id = None
    return {
        "site_id": site_id_of(raw),
        "event_id": parsed_id,
        "version": version
        if isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= MAX_VERSION
        else None,
    }


def site_id_of(raw: object) -> int | None:
    """The site id of a possibly invalid event."""
    if isinstance(raw, dict) and isinstance(raw.get("site"), dict):
        value = raw["site"].get("id")
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**31:
            return value
    return None


def describe(exc: ValidationError, limit: int = 1000) -> str:
    """Field paths and reasons, never input values: env values may be secrets, and so may a
    rejected env key (`DB_PASSWORD=hunter2`), which pydantic puts in the path."""
    parts: list[str] = []
    size = 0
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        loc = error["loc"]
        # A dict key that failed validation comes right before pydantic's "[key]" marker; a key
        # that is no identifier at all is shortened wherever it shows (also on its value's error).
        shown = [
            _key_shown(p) if loc[i + 1 : i + 2] == ("[key]",) or not _shown_whole(p) else str(p)
            for i, p in enumerate(loc)
        ]
        parts.append(f"{'.'.join(shown) or 'event'}: {error['msg']}")
        size += len(parts[-1]) + 2
        if size > limit:
            break
    return "; ".join(parts)[:limit]


_KEY_SHOWN = re.compile(r"[A-Za-z0-9_]{0,8}", re.ASCII)
# What a path component may be to be shown whole: a field name, an index, an env key.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}|\[key\]", re.ASCII)


def _shown_whole(part: str | int) -> bool:
    """A field name, an index, a valid env key, or the event type pydantic's union puts first."""
    return isinstance(part, int) or str(part) in SITE_EVENT_TYPES or bool(_PLAIN.fullmatch(str(part)))


def _key_shown(key: str | int) -> str:
    """A rejected key named by its first identifier characters (at most 8), never echoed whole."""
    text = str(key)
    shown = _KEY_SHOWN.match(text)
    head = shown.group(0) if shown else ""
    return head if head == text else f"{head}…"
