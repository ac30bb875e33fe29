"""The messages of `schemas/asyncapi.json`: one per message type of the bus, with its payload (the
pydantic model's schema), summary, example and correlation id, and the names every part of the
document shares. Names are the Settings defaults, so the document cannot drift from the code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel

from orchestrator.config import Settings
from orchestrator_contract import headers as hdr
from orchestrator_contract import version as contract
from orchestrator_contract.certificates import SiteCertificate
from orchestrator_contract.files import FILE_REQUESTS, RESULTS, STREAMING, ErrorReply
from orchestrator_contract.metrics import (
    METRICS_REQUESTS,
    METRICS_RESULTS,
    NodeMetrics,
    OrchestratorMetrics,
    SiteMetrics,
)
from orchestrator_contract.results import DriftReport, SiteHealth, SiteResult, SiteResultType
from orchestrator_contract.sites import SiteCreated, SiteDeleted, SiteImageRequested, SiteRestartRequested, SiteUpdated
from orchestrator_contract.terminals import TERMINAL_COMMANDS, TerminalUpdate, TerminalUpdateType

AMQP_BINDING = "0.3.0"
SCHEMAS = "#/components/schemas/"
DEAD_LETTER = "dead-letter"


def _type_of(model: type[BaseModel]) -> str:
    """The one value the model's `type` literal allows."""
    (value,) = get_args(model.model_fields["type"].annotation)
    return str(value)


INBOUND_MODELS: dict[str, type[BaseModel]] = {
    _type_of(model): model
    for model in (SiteCreated, SiteUpdated, SiteDeleted, SiteRestartRequested, SiteImageRequested)
}
RESULT_TYPES: tuple[str, ...] = get_args(SiteResultType)
# Published on the results exchange besides the results of site events.
REPORTS: dict[str, type[BaseModel]] = {_type_of(model): model for model in (SiteHealth, SiteCertificate, DriftReport)}
# Every period, on the results exchange (docs/metrics.md).
METRICS_EVENTS: dict[str, type[BaseModel]] = {
    _type_of(model): model for model in (SiteMetrics, NodeMetrics, OrchestratorMetrics)
}
TERMINAL_EVENT_TYPES: tuple[str, ...] = get_args(TerminalUpdateType)
# Replies to file requests travel on the default exchange to the requester's reply queue.
REPLIES = "replies"
FILE_REPLIES: dict[str, str] = {f"{op}.reply": op for op in FILE_REQUESTS}
FILE_ERROR = "files.error"
METRICS_REPLIES: dict[str, str] = {f"{op}.reply": op for op in METRICS_REQUESTS}

# What each of our headers holds; the names are headers.py's (a test checks none is missing).
_HEADERS: dict[str, dict[str, Any]] = {
    hdr.ATTEMPTS: {"type": "integer", "minimum": 1, "description": "Deliveries that failed so far."},
    hdr.ROUTING_KEY: {"type": "string", "description": "The routing key the message was first published with."},
    hdr.EXCHANGE: {"type": "string", "description": "The exchange the message was first published to."},
    hdr.PUBLISHER: {"type": "string", "description": "The broker user the orchestrator authenticated."},
    hdr.ERROR_CODE: {"$ref": f"{SCHEMAS}ErrorCode"},
    hdr.ERROR_MESSAGE: {"type": "string", "description": "Why, for an operator (never an env value)."},
    hdr.FIRST_FAILURE: {"type": "string", "format": "date-time", "description": "When the first failure was."},
    hdr.LAST_FAILURE: {"type": "string", "format": "date-time", "description": "When the last failure was."},
    hdr.REPLAYED: {"type": "integer", "minimum": 1, "description": "Times an operator replayed the message."},
    hdr.TRUNCATED: {
        "type": "integer",
        "description": "The body was larger than the contract admits: the copy keeps its first 4 KiB; this is the "
        "original size (such a letter is never replayed).",
    },
    hdr.BODY_SHA256: {"type": "string", "description": "sha256 (hex) of the original body of a truncated copy."},
}


def setting(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True, validated_data={})


def ref(*path: str) -> dict[str, str]:
    # JSON pointer escaping: our names hold dots, never "~" or "/".
    return {"$ref": "#/" + "/".join(path)}


# Every message carries the contract's version (orchestrator_contract.version).
CONTRACT_HEADER: dict[str, Any] = {
    "type": "string",
    "pattern": rf"^{contract.MAJOR}\.[0-9]+\.[0-9]+$",
    "examples": [contract.VERSION],
    "description": "The version of the contract the publisher speaks (this document's is `info.version`). A "
    "message of another major version is refused, not acted on; one without the header is read as this major "
    "version.",
}
HEADERS = {"type": "object", "properties": {contract.HEADER: CONTRACT_HEADER}, "additionalProperties": True}


def _message(name: str, payload: dict[str, Any], model: type[BaseModel], examples: Mapping[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "contentType": "application/json",
        "headers": HEADERS,
        "payload": payload,
        "bindings": {"amqp": {"messageType": name, "bindingVersion": AMQP_BINDING}},
    }
    if model.__doc__:  # the docstring's first line; a model without one gets no summary
        message["summary"] = model.__doc__.strip().splitlines()[0]
    if name in examples:
        message["examples"] = [{"name": name, "payload": examples[name]}]
    return message


def _typed(model: type[BaseModel], value: str) -> dict[str, Any]:
    """The model's schema narrowed to one value of its `type` (one message per type)."""
    return {"allOf": [{"$ref": SCHEMAS + model.__name__}, {"properties": {"type": {"const": value}}}]}


def messages(examples: Mapping[str, Any]) -> dict[str, Any]:
    """Every message of the bus by name; `examples` maps a message name to an example payload."""
    found = {
        **_site_messages(examples),
        **_terminal_messages(examples),
        **_file_messages(examples),
        **_metrics_messages(examples),
    }
    found[DEAD_LETTER] = _DEAD_LETTER_MESSAGE
    return found


def _site_messages(examples: Mapping[str, Any]) -> dict[str, Any]:
    allowed = ", ".join(f"`{user}`" for user in setting("allowed_publishers"))
    inbound_note = (
        "Published by Director with `user_id` = its broker user (RabbitMQ verifies it; one of "
        f"ORCHESTRATOR_ALLOWED_PUBLISHERS, by default {allowed}: any other publisher is dead-lettered as "
        "`unauthenticated`), `message_id` = `event_id`, persistent, routing key = `type`."
    )
    messages: dict[str, Any] = {}
    for name, model in INBOUND_MODELS.items():
        messages[name] = _message(name, ref("components", "schemas", model.__name__), model, examples)
        messages[name]["description"] = inbound_note
    for name in RESULT_TYPES:
        messages[name] = _message(name, _typed(SiteResult, name), SiteResult, examples)
        messages[name]["correlationId"] = {
            "description": "The inbound event's `event_id`; AMQP `correlation_id` carries the inbound message's.",
            "location": "$message.payload#/causation_id",
        }
    for name, report in REPORTS.items():
        messages[name] = _message(name, ref("components", "schemas", report.__name__), report, examples)
    return messages


def _terminal_messages(examples: Mapping[str, Any]) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for name, command in TERMINAL_COMMANDS.items():
        messages[name] = _message(name, ref("components", "schemas", command.__name__), command, examples)
    for kind in TERMINAL_EVENT_TYPES:
        name = f"terminal.{kind}"
        messages[name] = _message(name, _typed(TerminalUpdate, kind), TerminalUpdate, examples)
    return messages


_CORRELATION = {
    "description": "The request's `correlation_id`, on every reply to it.",
    "location": "$message.header#/correlation_id",
}


def _request_note() -> str:
    return (
        "Published by Director with `user_id` = its broker user (checked as for site events), `reply_to` (RabbitMQ's "
        f"direct reply-to `amq.rabbitmq.reply-to`, or a queue named `{setting('files_reply_queue_prefix')}<name>` "
        "that Director declared) and `correlation_id`, both required; routing key = the operation."
    )


def _file_messages(examples: Mapping[str, Any]) -> dict[str, Any]:
    files_note, correlation = _request_note(), _CORRELATION
    messages: dict[str, Any] = {}
    for name, request in FILE_REQUESTS.items():
        messages[name] = _message(name, ref("components", "schemas", request.__name__), request, examples)
        messages[name]["description"] = files_note
        messages[name]["correlationId"] = correlation
    for name, op in FILE_REPLIES.items():
        result = RESULTS[op]
        payload = {
            "type": "object",
            "required": ["ok", "result"],
            "properties": {"ok": {"const": True}, "result": {"$ref": SCHEMAS + result.__name__}},
        }
        messages[name] = _message(name, payload, result, examples)
        messages[name]["summary"] = f"The reply to `{op}`" + (", one of a stream." if op in STREAMING else ".")
        messages[name]["correlationId"] = correlation
    messages[FILE_ERROR] = _message(FILE_ERROR, ref("components", "schemas", ErrorReply.__name__), ErrorReply, examples)
    messages[FILE_ERROR]["correlationId"] = correlation
    return messages


def _metrics_messages(examples: Mapping[str, Any]) -> dict[str, Any]:
    """The periodic events, and the requests for the current values with their replies (an error
    reply is the file requests' `files.error`)."""
    messages: dict[str, Any] = {}
    for name, event in METRICS_EVENTS.items():
        messages[name] = _message(name, ref("components", "schemas", event.__name__), event, examples)
    for name, asked in METRICS_REQUESTS.items():
        messages[name] = _message(name, ref("components", "schemas", asked.__name__), asked, examples)
        messages[name]["description"] = _request_note()
        messages[name]["correlationId"] = _CORRELATION
    for name, op in METRICS_REPLIES.items():
        answer = METRICS_RESULTS[op]
        payload = {
            "type": "object",
            "required": ["ok", "result"],
            "properties": {"ok": {"const": True}, "result": {"$ref": SCHEMAS + answer.__name__}},
        }
        messages[name] = _message(name, payload, answer, examples)
        messages[name]["summary"] = f"The reply to `{op}`."
        messages[name]["correlationId"] = _CORRELATION
    return messages


_DEAD_LETTER_MESSAGE = {
    "name": DEAD_LETTER,
    "summary": "A message the orchestrator gave up on, kept for an operator to inspect and replay.",
    "description": (
        "Published with the original routing key, `message_id`, `correlation_id` and content type. "
        "Messages the broker dead-lettered itself (past the work queue's delivery limit, a terminal "
        "command unread past its TTL) carry its `x-death` headers instead of ours."
    ),
    "headers": {
        "type": "object",
        "properties": {contract.HEADER: CONTRACT_HEADER, **_HEADERS},
        "additionalProperties": True,
    },
    "payload": {
        "description": (
            "The original body, byte for byte: usually a site event or a terminal command, but a "
            "malformed message is kept as it came and may not even be JSON."
        )
    },
    "bindings": {"amqp": {"bindingVersion": AMQP_BINDING}},
}
