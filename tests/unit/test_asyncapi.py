"""schemas/asyncapi.json is a valid AsyncAPI 3.0.0 document covering every event type.

The official JSON Schema comes from scripts/fetch-asyncapi-schema.sh (run by `make unit` and
`make test`); without it these tests fail rather than skip, so the check cannot silently vanish.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from orchestrator.config import Settings
from orchestrator.schemas.messages import (
    DEAD_LETTER,
    FILE_ERROR,
    FILE_REPLIES,
    METRICS_EVENTS,
    METRICS_REPLIES,
    REPLIES,
)
from orchestrator_contract import headers as hdr
from orchestrator_contract import version
from orchestrator_contract.certificates import SiteCertificate
from orchestrator_contract.files import FILE_REQUESTS
from orchestrator_contract.metrics import METRICS_REQUESTS
from orchestrator_contract.results import DriftReport, SiteHealth, SiteResultType
from orchestrator_contract.sites import SITE_EVENT_TYPES
from orchestrator_contract.terminals import TERMINAL_COMMANDS, TerminalUpdateType

DOCUMENT = Path(__file__).resolve().parents[2] / "schemas" / "asyncapi.json"
FETCH = "scripts/fetch-asyncapi-schema.sh"

Doc = dict[str, Any]


def official_schema_path() -> Path:
    if explicit := os.environ.get("ASYNCAPI_SCHEMA"):
        return Path(explicit)
    return Path(os.environ.get("STACK_CACHE_DIR", "/var/cache/director-stack")) / "asyncapi" / "3.0.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    path = official_schema_path()
    if not path.is_file():
        pytest.fail(f"the AsyncAPI 3.0.0 JSON Schema is not at {path}: run `bash {FETCH}` (or `make unit`) first")
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    # The AsyncAPI schema declares draft 7; a different validator would mean a different file.
    assert cls is jsonschema.Draft7Validator
    return cls(schema)


@pytest.fixture
def doc() -> Doc:
    document: Doc = json.loads(DOCUMENT.read_text())
    return document


def resolve(doc: Doc, ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are expected: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def channel_messages(doc: Doc) -> Iterator[tuple[str, str, Doc]]:
    for channel_id, channel in doc["channels"].items():
        for key, message in channel["messages"].items():
            yield channel_id, key, resolve(doc, message["$ref"]) if "$ref" in message else message


def test_document_is_valid_asyncapi_3(validator: jsonschema.protocols.Validator, doc: Doc) -> None:
    assert doc["asyncapi"] == "3.0.0"
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(doc)]
    assert errors == []


def _publish(doc: Doc) -> None:
    doc["operations"]["sendResults"]["action"] = "publish"  # AsyncAPI 2 syntax


def _bad_binding(doc: Doc) -> None:
    # Lives in a definition the bundled schema embeds by $id: proves those references are followed.
    doc["channels"][Settings.model_fields["inbound_exchange"].default]["bindings"]["amqp"]["is"] = "exchange"


def _no_title(doc: Doc) -> None:
    del doc["info"]["title"]


@pytest.mark.parametrize("breaking", [_publish, _bad_binding, _no_title])
def test_a_broken_document_fails_validation(
    validator: jsonschema.protocols.Validator, doc: Doc, breaking: Callable[[Doc], None]
) -> None:
    broken = copy.deepcopy(doc)
    breaking(broken)
    assert not validator.is_valid(broken)


def test_every_reference_resolves(doc: Doc) -> None:
    for ref in refs(doc):
        resolve(doc, ref)


def test_every_message_of_every_channel_has_a_payload_that_resolves(doc: Doc) -> None:
    seen = 0
    for channel_id, key, message in channel_messages(doc):
        assert "payload" in message, f"{channel_id}/{key} has no payload"
        for ref in refs(message["payload"]):
            assert isinstance(resolve(doc, ref), dict), f"{channel_id}/{key}: {ref}"
        seen += 1
    assert seen == len(list(channel_messages(doc))) > 0


def test_message_names_are_exactly_the_event_types(doc: Doc) -> None:
    events = {
        *SITE_EVENT_TYPES,
        *get_args(SiteResultType),
        SiteHealth.model_fields["type"].default,
        SiteCertificate.model_fields["type"].default,
        DriftReport.model_fields["type"].default,
        *TERMINAL_COMMANDS,
        *(f"terminal.{kind}" for kind in get_args(TerminalUpdateType)),
        *FILE_REQUESTS,
        *FILE_REPLIES,
        FILE_ERROR,
        *METRICS_EVENTS,
        *METRICS_REQUESTS,
        *METRICS_REPLIES,
    }
    names = [message["name"] for _, _, message in channel_messages(doc)]
    assert sorted(names) == sorted(events | {DEAD_LETTER})
    assert [key for _, key, _ in channel_messages(doc)] == names


def test_operations_point_at_their_own_channel_and_cover_every_message(doc: Doc) -> None:
    covered = set()
    for operation in doc["operations"].values():
        for part in (operation, operation.get("reply")):
            if part is None:
                continue
            channel = part["channel"]["$ref"]
            for message in part["messages"]:
                assert message["$ref"].startswith(channel + "/messages/")
                covered.add(message["$ref"])
    assert covered == {f"#/channels/{c}/messages/{k}" for c, k, _ in channel_messages(doc)}


def test_channels_are_the_configured_exchanges(doc: Doc) -> None:
    names = ["inbound_exchange", "results_exchange", "terminal_exchange", "terminal_events_exchange", "files_exchange"]
    defaults = {Settings.model_fields[name].default for name in [*names, "dead_letter_exchange"]}
    assert set(doc["channels"]) == defaults | {REPLIES}
    for channel_id, channel in doc["channels"].items():
        # Replies travel on the default exchange (its name is ""), routing key = reply_to.
        assert channel["bindings"]["amqp"]["exchange"]["name"] == ("" if channel_id == REPLIES else channel_id)


def test_file_requests_declare_their_replies(doc: Doc) -> None:
    operation = doc["operations"]["receiveFileRequests"]
    assert operation["reply"]["address"]["location"] == "$message.header#/reply_to"
    replies = {ref["$ref"].rsplit("/", 1)[1] for ref in operation["reply"]["messages"]}
    assert replies == {f"{op}.reply" for op in FILE_REQUESTS} | {FILE_ERROR}


def test_every_example_matches_its_message_payload(doc: Doc) -> None:
    registry: Registry[Any] = Registry().with_resource("urn:asyncapi", Resource.from_contents(doc, DRAFT7))
    examples = 0
    for channel_id, key, message in channel_messages(doc):
        pointer = f"urn:asyncapi#/components/messages/{key}/payload"
        payload_validator = jsonschema.Draft7Validator({"$ref": pointer}, registry=registry)
        for example in message.get("examples", []):
            errors = [e.message for e in payload_validator.iter_errors(example["payload"])]
            assert errors == [], f"{channel_id}/{key}"
            examples += 1
    assert examples == len(list(channel_messages(doc))) - 1  # all but the dead letter (any body)


def test_dead_letter_headers_list_every_one_of_ours(doc: Doc) -> None:
    ours = {v for k, v in vars(hdr).items() if k.isupper() and isinstance(v, str) and v.startswith(hdr.PREFIX)}
    ours.discard(hdr.PREFIX)
    assert set(doc["components"]["messages"][DEAD_LETTER]["headers"]["properties"]) == ours | {version.HEADER}


def test_the_document_and_every_message_carry_the_contract_version(doc: Doc) -> None:
    """Issue 28: `info.version` is the contract package's version, and every message says which
    header carries it on the wire (and that a message of another major version is refused)."""
    assert doc["info"]["version"] == version.VERSION == importlib.metadata.version("orchestrator-contract")
    for _, key, message in channel_messages(doc):
        header = message["headers"]["properties"][version.HEADER]
        assert re.fullmatch(header["pattern"], version.VERSION), key
        assert not re.fullmatch(header["pattern"], f"{version.MAJOR + 1}.0.0"), key
