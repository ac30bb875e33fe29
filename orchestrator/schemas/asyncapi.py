"""`schemas/asyncapi.json`: every channel and message of the bus as an AsyncAPI 3.0.0 document.

Written from the orchestrator's side: it receives Director's messages and sends its own. Payloads
are the pydantic models' JSON Schemas and names are the Settings defaults, so the document cannot
drift from the code; `schemas.export.documents()` adds it to `schemas/`. The messages are
`schemas.messages`'s; here are the channels (one per exchange), the operations and the document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from orchestrator.schemas.messages import (
    AMQP_BINDING,
    DEAD_LETTER,
    FILE_ERROR,
    FILE_REPLIES,
    INBOUND_MODELS,
    METRICS_EVENTS,
    METRICS_REPLIES,
    REPLIES,
    REPORTS,
    RESULT_TYPES,
    SCHEMAS,
    TERMINAL_EVENT_TYPES,
    messages,
    ref,
    setting,
)
from orchestrator_contract import version as contract
from orchestrator_contract.certificates import SiteCertificate
from orchestrator_contract.files import FILE_REQUESTS, RESULTS, ErrorReply
from orchestrator_contract.metrics import METRICS_REQUESTS, METRICS_RESULTS
from orchestrator_contract.results import DriftReport, SiteHealth, SiteResult
from orchestrator_contract.terminals import TERMINAL_COMMANDS, TerminalUpdate

ASYNCAPI_VERSION = "3.0.0"
PERSISTENT, TRANSIENT = 2, 1  # AMQP delivery modes


@dataclass(frozen=True)
class Exchanges:
    """The exchanges' names, as the Settings defaults have them."""

    inbound: str
    results: str
    commands: str
    sessions: str
    dead_letters: str
    files: str

    @classmethod
    def of_settings(cls) -> Exchanges:
        return cls(
            setting("inbound_exchange"),
            setting("results_exchange"),
            setting("terminal_exchange"),
            setting("terminal_events_exchange"),
            setting("dead_letter_exchange"),
            setting("files_exchange"),
        )

    def messages(self) -> dict[str, Iterable[str]]:
        """The messages of each channel."""
        return {
            self.inbound: INBOUND_MODELS,
            self.results: [*RESULT_TYPES, *REPORTS, *METRICS_EVENTS],
            self.commands: TERMINAL_COMMANDS,
            self.sessions: [f"terminal.{kind}" for kind in TERMINAL_EVENT_TYPES],
            self.dead_letters: [DEAD_LETTER],
            self.files: [*FILE_REQUESTS, *METRICS_REQUESTS],
            REPLIES: [*FILE_REPLIES, *METRICS_REPLIES, FILE_ERROR],
        }


def document(examples: Mapping[str, Any]) -> dict[str, Any]:
    """The AsyncAPI document; `examples` maps a message name to an example payload (JSON)."""
    names = Exchanges.of_settings()
    broker = urlsplit(setting("amqp_url"))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "orchestrator",
            "version": contract.VERSION,
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
        "channels": channels(names),
        "operations": operations(names),
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
                    *METRICS_EVENTS.values(),
                    *METRICS_REQUESTS.values(),
                    *METRICS_RESULTS.values(),
                ]
            ),
            "messages": messages(examples),
        },
    }


def channels(names: Exchanges) -> dict[str, Any]:
    inbound, results, commands, sessions = names.inbound, names.results, names.commands, names.sessions
    dead_letters, files = names.dead_letters, names.files
    found: dict[str, Any] = {
        inbound: _exchange(
            inbound,
            f"Director's site events, consumed from the quorum queue `{setting('work_queue')}` "
            f"(bound with `{setting('binding_key')}`).",
            "{type}",
            _by_type(INBOUND_MODELS, "$message.payload#/type"),
        ),
        results: _exchange(
            results,
            "What the orchestrator did with each site event. The durable queue "
            f"`{setting('results_queue')}` keeps them for Director. Deduplicate by `causation_id`.",
            "{type}",
            _by_type(RESULT_TYPES, "$message.payload#/type"),
        ),
        commands: _exchange(
            commands,
            f"Director's terminal commands, consumed from the classic queue `{setting('terminal_queue')}` "
            f"(bound with `{setting('terminal_binding_key')}`); the routing key names the command.",
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
            f"`{setting('dead_letter_queue')}`, which `orchestrator dead-letters list|replay|purge` reads; file "
            f"requests to `{setting('files_queue')}.dead`, terminal commands to `{setting('terminal_queue')}.dead` "
            "(bounded, for an operator to read).",
            "{routing_key}",
            {"routing_key": {"description": "The routing key the message was first published with."}},
        ),
        files: _exchange(
            files,
            f"Director's file and log requests, consumed from the classic queue `{setting('files_queue')}` (bound "
            "with `files.*` and `logs.*`), and its requests for the current metrics, from "
            f"`{setting('metrics_queue')}` (bound with `metrics.*`); the routing key names the operation.",
            "{type}",
            _by_type([*FILE_REQUESTS, *METRICS_REQUESTS]),
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
    for channel, listed in names.messages().items():
        found[channel]["messages"] = {name: ref("components", "messages", name) for name in listed}
    return found


def operations(names: Exchanges) -> dict[str, Any]:
    publishers = setting("allowed_publishers")
    channel_messages = names.messages()
    inbound, results, commands, sessions = names.inbound, names.results, names.commands, names.sessions
    dead_letters, files = names.dead_letters, names.files
    return {
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
        **_reports(results),
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
                "channel": ref("channels", REPLIES),
                "messages": [ref("channels", REPLIES, "messages", name) for name in [*FILE_REPLIES, FILE_ERROR]],
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
        **_metrics_operations(names),
    }


def _metrics_operations(names: Exchanges) -> dict[str, Any]:
    return {
        "sendMetrics": _operation(
            "send",
            names.results,
            METRICS_EVENTS,
            f"Every METRICS_SECONDS (by default {setting('metrics_seconds'):g}): one `site.metrics` per site, one "
            "`node.metrics` per node, one `orchestrator.metrics` per replica; not persistent, expiring after two "
            "periods unread, spread over half a period. The same site and window always carry the same `event_id`.",
            deliveryMode=TRANSIENT,
            mandatory=False,
        ),
        "receiveMetricsRequests": {
            **_operation(
                "receive",
                names.files,
                METRICS_REQUESTS,
                "Answer with the latest window of a site, a page of sites, or every node (from memory).",
                ack=True,
                userId=setting("allowed_publishers")[0],
            ),
            "reply": {
                "address": {"location": "$message.header#/reply_to", "description": "The request's `reply_to`."},
                "channel": ref("channels", REPLIES),
                "messages": [ref("channels", REPLIES, "messages", name) for name in [*METRICS_REPLIES, FILE_ERROR]],
            },
        },
    }


# The orchestrator's own reports on the results exchange: operation, model, what, mandatory.
_REPORTS = (
    (
        "sendSiteHealth",
        SiteHealth,
        "A deployed site's health changed (once per change, from Docker's event stream).",
        True,
    ),
    (
        "sendSiteCertificates",
        SiteCertificate,
        "A domain's certificate was issued, renewed, queued, failed, is expiring or was removed.",
        True,
    ),
    (
        "sendDriftReports",
        DriftReport,
        "Periodically, what drifted from what was applied (only when anything did).",
        False,
    ),
)


def _reports(results: str) -> dict[str, Any]:
    return {
        operation: _operation(
            "send",
            results,
            [model.model_fields["type"].default],
            summary,
            deliveryMode=PERSISTENT,
            mandatory=mandatory,
        )
        for operation, model, summary, mandatory in _REPORTS
    }


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


def _operation(action: str, channel: str, messages: Iterable[str], summary: str, **amqp: Any) -> dict[str, Any]:
    return {
        "action": action,
        "channel": ref("channels", channel),
        "messages": [ref("channels", channel, "messages", name) for name in messages],
        "summary": summary,
        "bindings": {"amqp": {**amqp, "bindingVersion": AMQP_BINDING}},
    }
