from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from orchestrator.bus.decoding import parse_command, parse_file_request
from orchestrator.schemas import export as schemas
from orchestrator_contract.files import FILE_REQUESTS, RESULTS, ErrorReply, OkReply
from orchestrator_contract.metrics import METRICS_REQUESTS
from orchestrator_contract.results import SiteResult
from orchestrator_contract.sites import SiteEvent
from orchestrator_contract.terminals import TerminalUpdate

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
INBOUND_EXAMPLES = ["site.created", "site.updated", "site.deleted", "site.restart_requested", "site.image_requested"]
RESULT_EXAMPLES = ["site.deployed", "site.removed", "site.failed", "site.stale", "site.image_built"]
COMMAND_EXAMPLES = ["terminal.open", "terminal.input", "terminal.resize", "terminal.close"]
REPORT_EXAMPLES = ["site.health", "site.certificate", "orchestrator.drift"]
SESSION_EXAMPLES = ["terminal.opened", "terminal.output", "terminal.closed", "terminal.failed"]
FILE_EXAMPLES = [*FILE_REQUESTS, *(f"{op}.reply" for op in FILE_REQUESTS), "files.error"]
METRICS_EXAMPLES = [
    "site.metrics",
    "node.metrics",
    "orchestrator.metrics",
    *METRICS_REQUESTS,
    *(f"{op}.reply" for op in METRICS_REQUESTS),
]


@functools.cache
def committed() -> dict[str, str]:
    return {str(p.relative_to(SCHEMAS)): p.read_text() for p in sorted(SCHEMAS.rglob("*")) if p.is_file()}


@functools.cache
def generated() -> dict[str, Any]:
    """Every document, generated once per test process (a third of a second each time)."""
    return schemas.documents()


def test_committed_schema_files_are_exactly_the_generated_set() -> None:
    assert set(committed()) == set(generated())


@pytest.mark.parametrize("name", sorted(generated()))
def test_committed_schema_file_equals_the_generated_document(name: str) -> None:
    # On a mismatch: `orchestrator schema export` regenerates schemas/ from the models.
    assert committed()[name] == schemas.render(generated()[name])


def test_every_event_type_has_an_example() -> None:
    names = {Path(name).stem for name in generated() if name.startswith("examples/")}
    assert names == set(
        INBOUND_EXAMPLES
        + RESULT_EXAMPLES
        + REPORT_EXAMPLES
        + COMMAND_EXAMPLES
        + SESSION_EXAMPLES
        + FILE_EXAMPLES
        + METRICS_EXAMPLES
    )


def test_export_writes_the_committed_files(tmp_path: Path) -> None:
    written = schemas.export(tmp_path)
    assert {str(p.relative_to(tmp_path)) for p in written} == set(committed())
    for name, text in committed().items():
        assert (tmp_path / name).read_text() == text


def test_render_is_stable_and_sorted() -> None:
    assert schemas.render({"b": 1, "a": [1, 2]}) == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


@pytest.mark.parametrize("name", INBOUND_EXAMPLES)
def test_inbound_example_validates(name: str) -> None:
    data = json.loads((SCHEMAS / "examples" / f"{name}.json").read_text())
    event = TypeAdapter(SiteEvent).validate_python(data)
    assert event.type == name
    assert json.loads(event.model_dump_json()) == data


@pytest.mark.parametrize("name", RESULT_EXAMPLES)
def test_result_example_validates(name: str) -> None:
    data = json.loads((SCHEMAS / "examples" / f"{name}.json").read_text())
    result = SiteResult.model_validate(data)
    assert result.type == name
    assert json.loads(result.model_dump_json()) == data


def test_inbound_schema_is_discriminated_by_type() -> None:
    schema = json.loads((SCHEMAS / "inbound-event.schema.json").read_text())
    assert schema["discriminator"]["propertyName"] == "type"
    assert set(schema["discriminator"]["mapping"]) == set(INBOUND_EXAMPLES)


@pytest.mark.parametrize("name", COMMAND_EXAMPLES)
def test_terminal_command_example_parses_as_its_routing_key_says(name: str) -> None:
    command = parse_command((SCHEMAS / "examples" / f"{name}.json").read_bytes(), name)
    assert command.type == name


@pytest.mark.parametrize("name", SESSION_EXAMPLES)
def test_terminal_event_example_validates(name: str) -> None:
    event = TerminalUpdate.model_validate_json((SCHEMAS / "examples" / f"{name}.json").read_text(), strict=True)
    assert f"terminal.{event.type}" == name


@pytest.mark.parametrize("name", list(FILE_REQUESTS))
def test_file_request_example_parses_under_its_routing_key(name: str) -> None:
    body = (SCHEMAS / "examples" / f"{name}.json").read_bytes()
    assert parse_file_request(body, name).type == name


@pytest.mark.parametrize("name", list(FILE_REQUESTS))
def test_file_reply_example_is_its_operations_result(name: str) -> None:
    data = json.loads((SCHEMAS / "examples" / f"{name}.reply.json").read_text())
    assert data["ok"] is True
    RESULTS[name].model_validate(data["result"])
    OkReply.model_validate(data)


def test_file_error_example_is_an_error_reply() -> None:
    data = json.loads((SCHEMAS / "examples" / "files.error.json").read_text())
    assert ErrorReply.model_validate(data).ok is False
