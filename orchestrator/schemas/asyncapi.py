"""`schemas/asyncapi.json`: every channel and message of the bus as an AsyncAPI 3.0.0 document.

Written from the orchestrator's side: it receives Director's messages and sends its own. Payloads
are the pydantic models' JSON Schemas and names are the Settings defaults, so the document cannot
drift from the code; `schemas.export.documents()` adds it to `schemas/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import version
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel

from orchestrator.config import Settings
from orchestrator_contract import headers as hdr
from orchestrator_contract.files import FILE_REQUESTS, RESULTS, STREAMING, ErrorReply
from orchestrator_contract.results import DriftReport, SiteHealth, SiteResult, SiteResultType
from orchestrator_contract.sites import SiteCreated, SiteDeleted, SiteImageRequested, SiteRestartRequested, SiteUpdated
from orchestrator_contract.terminals import TERMINAL_COMMANDS, TerminalUpdate, TerminalUpdateType

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING = "0.3.0"
SCHEMAS = "#/components/schemas/"
DEAD_LETTER = "dead-letter"
PERSISTENT, TRANSIENT = 2, 1  # AMQP delivery modes


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
REPORTS: dict[str, type[BaseModel]] = {_type_of(model): model for model in (SiteHealth, DriftReport)}
TERMINAL_EVENT_TYPES: tuple[str, ...] = get_args(TerminalUpdateType)
# Replies to file requests travel on the default exchange to the requester's reply queue.
REPLIES = "replies"
FILE_REPLIES: dict[str, str] = {f"{op}.reply": op for op in FILE_REQUESTS}
FILE_ERROR = "files.error"

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


def _setting(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True, validated_data={})


def _ref(*path: str) -> dict[str, str]:
    # JSON pointer escaping: our names hold dots, never "~" or "/".
    return {"$ref": "#/" + "/".join(path)}


def _schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """Each model's schema under its own name, with the `$defs` hoisted beside it."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
        for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if schemas.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are both named {name!r}")
    return schemas


def _exchange(name: str, description: str, address: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "parameters": parameters,
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {"name": name, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
                "bindingVersion": AMQP_BINDING,
            }
        },
    }


def _by_type(types: Iterable[str], location: str | None = None) -> dict[str, Any]:
    parameter: dict[str, Any] = {"enum": list(types), "description": "The message's type."}
    if location:
        parameter["location"] = location
    return {"type": parameter}


def _message(name: str, payload: dict[str, Any], model: type[BaseModel], examples: Mapping[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "contentType": "application/json",
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


def _operation(action: str, channel: str, messages: Iterable[str], summary: str, **amqp: Any) -> dict[str, Any]:
    return {
        "action": action,
        "channel": _ref("channels", channel),
        "messages": [_ref("channels", channel, "messages", name) for name in messages],
        "summary": summary,
        "bindings": {"amqp": {**amqp, "bindingVersion": AMQP_BINDING}},
    }


def document(examples: Mapping[str, Any]) -> dict[str, Any]:
    """The AsyncAPI document; `examples` maps a message name to an example payload (JSON)."""
    inbound, results = _setting("inbound_exchange"), _setting("results_exchange")
    commands, sessions = _setting("terminal_exchange"), _setting("terminal_events_exchange")
    dead_letters = _setting("dead_letter_exchange")
    files = _setting("files_exchange")
    publishers = _setting("allowed_publishers")
    broker = urlsplit(_setting("amqp_url"))

    allowed = ", ".join(f"`{user}`" for user in publishers)
    inbound_note = (
        "Published by Director with `user_id` = its broker user (RabbitMQ verifies it; one of "
        f"ORCHESTRATOR_ALLOWED_PUBLISHERS, by default {allowed}: any other publisher is dead-lettered as "
        "`unauthenticated`), `message_id` = `event_id`, persistent, routing key = `type`."
    )
    messages: dict[str, Any] = {}
    for name, model in INBOUND_MODELS.items():
        messages[name] = _message(name, _ref("components", "schemas", model.__name__), model, examples)
        messages[name]["description"] = inbound_note
    for name in RESULT_TYPES:
        messages[name] = _message(name, _typed(SiteResult, name), SiteResult, examples)
        messages[name]["correlationId"] = {
            "description": "The inbound event's `event_id`; AMQP `correlation_id` carries the inbound message's.",
            "location": "$message.payload#/causation_id",
        }
    for name, report in REPORTS.items():
        messages[name] = _message(name, _ref("components", "schemas", report.__name__), report, examples)
    for name, command in TERMINAL_COMMANDS.items():
        messages[name] = _message(name, _ref("components", "schemas", command.__name__), command, examples)
    for kind in TERMINAL_EVENT_TYPES:
        name = f"terminal.{kind}"
        messages[name] = _message(name, _typed(TerminalUpdate, kind), TerminalUpdate, examples)
    files_note = (
        "Published by Director with `user_id` = its broker user (checked as for site events), `reply_to` (RabbitMQ's "
        f"direct reply-to `amq.rabbitmq.reply-to`, or a queue named `{_setting('files_reply_queue_prefix')}<name>` "
        "that Director declared) and `correlation_id`, both required; routing key = the operation."
    )
    correlation = {
        "description": "The request's `correlation_id`, on every reply to it.",
        "location": "$message.header#/correlation_id",
    }
    for name, request in FILE_REQUESTS.items():
        messages[name] = _message(name, _ref("components", "schemas", request.__name__), request, examples)
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
    messages[FILE_ERROR] = _message(
        FILE_ERROR, _ref("components", "schemas", ErrorReply.__name__), ErrorReply, examples
    )
    messages[FILE_ERROR]["correlationId"] = correlation
    messages[DEAD_LETTER] = {
        "name": DEAD_LETTER,
        "summary": "A message the orchestrator gave up on, kept for an operator to inspect and replay.",
        "description": (
            "Published with the original routing key, `message_id`, `correlation_id` and content type. "
            "Messages the broker dead-lettered itself (past the work queue's delivery limit, a terminal "
            "command unread past its TTL) carry its `x-death` headers instead of ours."
        ),
        "headers": {"type": "object", "properties": _HEADERS, "additionalProperties": True},
        "payload": {
            "description": (
                "The original body, byte for byte: usually a site event or a terminal command, but a "
                "malformed message is kept as it came and may not even be JSON."
            )
        },
        "bindings": {"amqp": {"bindingVersion": AMQP_BINDING}},
    }

    channel_messages = {
        inbound: INBOUND_MODELS,
        results: [*RESULT_TYPES, *REPORTS],
        commands: TERMINAL_COMMANDS,
        sessions: [f"terminal.{kind}" for kind in TERMINAL_EVENT_TYPES],
        dead_letters: [DEAD_LETTER],
        files: FILE_REQUESTS,
        REPLIES: [*FILE_REPLIES, FILE_ERROR],
    }
    channels = {
        inbound: _exchange(
            inbound,
            f"Director's site events, consumed from the quorum queue `{_setting('work_queue')}` "
            f"(bound with `{_setting('binding_key')}`).",
            "{type}",
            _by_type(INBOUND_MODELS, "$message.payload#/type"),
        ),
        results: _exchange(
            results,
            "What the orchestrator did with each site event. The durable queue "
            f"`{_setting('results_queue')}` keeps them for Director. Deduplicate by `causation_id`.",
            "{type}",
            _by_type(RESULT_TYPES, "$message.payload#/type"),
        ),
        commands: _exchange(
            commands,
            f"Director's terminal commands, consumed from the classic queue `{_setting('terminal_queue')}` "
            f"(bound with `{_setting('terminal_binding_key')}`); the routing key names the command.",
            "{type}",
            # Not from the payload: a command's body may leave `type` out.
            _by_type(TERMINAL_COMMANDS),
        ),
        sessions: _exchange(
            sessions,
            "Terminal session events, in order (`seq`); Director binds its own queue per session.",
            "terminal.{session_id}",
            {
                "session_id": {
                    "description": "The session the event belongs to.",
                    "location": "$message.payload#/session_id",
                }
            },
        ),
        dead_letters: _exchange(
            dead_letters,
            f"Messages given up on, a queue per kind: site events to the quorum queue "
            f"`{_setting('dead_letter_queue')}`, which `orchestrator dead-letters list|replay|purge` reads; file "
            f"requests to `{_setting('files_queue')}.dead`, terminal commands to `{_setting('terminal_queue')}.dead` "
            "(bounded, for an operator to read).",
            "{routing_key}",
            {"routing_key": {"description": "The routing key the message was first published with."}},
        ),
        files: _exchange(
            files,
            f"Director's file and log requests, consumed from the classic queue `{_setting('files_queue')}` (bound "
            "with `files.*` and `logs.*`); the routing key names the operation.",
            "{type}",
            _by_type(FILE_REQUESTS),
        ),
        REPLIES: {
            "address": "{reply_to}",
            "description": (
                "Replies to file requests: the default exchange, routing key = the request's `reply_to`, with its "
                "`correlation_id`, not persistent. `files.archive` and `logs.follow` answer with a stream of replies "
                "(ordered by `seq`), which ends with `last: true` or an error reply."
            ),
            "parameters": {"reply_to": {"description": "The request's `reply_to`: a reply queue of Director's."}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": "", "type": "default", "durable": True, "autoDelete": False, "vhost": "/"},
                    "bindingVersion": AMQP_BINDING,
                }
            },
        },
    }
    for channel, names in channel_messages.items():
        channels[channel]["messages"] = {name: _ref("components", "messages", name) for name in names}

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "orchestrator",
            "version": version("orchestrator"),
            "description": (
                "Director's site events, terminal commands and file requests in; results, terminal session "
                "events, replies and dead letters out. Generated from the pydantic models (`orchestrator schema "
                "export`)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": broker.netloc.rpartition("@")[2],
                "protocol": broker.scheme,
                "protocolVersion": "0.9.1",
                "description": "The local stack's RabbitMQ (scripts/stack-up.sh); see ORCHESTRATOR_AMQP_URL.",
            }
        },
        "channels": channels,
        "operations": {
            "receiveSiteEvents": _operation(
                "receive",
                inbound,
                INBOUND_MODELS,
                "Apply a site event to the swarm.",
                ack=True,
                userId=publishers[0],  # the binding holds one user: the first allowed (the only one by default)
            ),
            "sendResults": _operation(
                "send",
                results,
                RESULT_TYPES,
                "Report what was done, after the swarm change and before the ack (at least once).",
                deliveryMode=PERSISTENT,
                mandatory=True,
                timestamp=True,
            ),
            "sendSiteHealth": _operation(
                "send",
                results,
                [SiteHealth.model_fields["type"].default],
                "A deployed site's health changed (once per change, from Docker's event stream).",
                deliveryMode=PERSISTENT,
                mandatory=True,
            ),
            "sendDriftReports": _operation(
                "send",
                results,
                [DriftReport.model_fields["type"].default],
                "Periodically, what drifted from what was applied (only when anything did).",
                deliveryMode=PERSISTENT,
                mandatory=False,
            ),
            "receiveTerminalCommands": _operation(
                "receive", commands, TERMINAL_COMMANDS, "Open, feed, resize or close a terminal session.", ack=True
            ),
            "sendTerminalEvents": _operation(
                "send",
                sessions,
                channel_messages[sessions],
                "A session's output and state, not persistent: a lost message shows as a `seq` gap.",
                deliveryMode=TRANSIENT,
                mandatory=False,
            ),
            "receiveFileRequests": {
                **_operation(
                    "receive",
                    files,
                    FILE_REQUESTS,
                    "Carry out a file or log request in a site's directory and answer it.",
                    ack=True,
                    userId=publishers[0],
                ),
                "reply": {
                    "address": {
                        "location": "$message.header#/reply_to",
                        "description": "The request's `reply_to`.",
                    },
                    "channel": _ref("channels", REPLIES),
                    "messages": [_ref("channels", REPLIES, "messages", name) for name in channel_messages[REPLIES]],
                },
            },
            "sendDeadLetters": _operation(
                "send",
                dead_letters,
                [DEAD_LETTER],
                "Keep a message that failed permanently or too often, with why in its headers.",
                deliveryMode=PERSISTENT,
                mandatory=True,
                timestamp=True,
            ),
        },
        "components": {
            "schemas": _schemas(
                [
                    *INBOUND_MODELS.values(),
                    SiteResult,
                    *REPORTS.values(),
                    *TERMINAL_COMMANDS.values(),
                    TerminalUpdate,
                    *FILE_REQUESTS.values(),
                    *RESULTS.values(),
                    ErrorReply,
                ]
            ),
            "messages": messages,
        },
    }
