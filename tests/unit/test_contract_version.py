"""The contract's version on the wire, and Director's client and the orchestrator speaking one
contract: what the client publishes, the server's parsers read as the same models; what the server
answers, the client reads; a message of another major version is refused both ways (issue 28)."""

from __future__ import annotations

import importlib.metadata
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from orchestrator.bus import replies
from orchestrator.bus.decoding import parse_command, parse_event, parse_file_request
from orchestrator.errors import InvalidEvent, InvalidRequest
from orchestrator.schemas.export import _examples, documents
from orchestrator_client import results as client_results
from orchestrator_client.errors import ContractMismatch, SiteNotFound
from orchestrator_client.requests import result_of
from orchestrator_client.sites import Sites
from orchestrator_client.terminals import Terminal, Terminals
from orchestrator_contract import version
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import FilesStat, StatResult
from orchestrator_contract.results import SiteResult
from orchestrator_contract.sites import SiteCreated, SiteRestartRequested
from orchestrator_contract.terminals import TerminalInput, TerminalOpen

ROOT = Path(__file__).resolve().parents[2]
OTHER_MAJOR = f"{version.MAJOR + 1}.0.0"


def test_the_version_is_the_contract_packages_and_every_document_carries_it() -> None:
    assert importlib.metadata.version("orchestrator-contract") == version.VERSION
    assert f"\n## {version.VERSION}\n" in (ROOT / "contract" / "CHANGELOG.md").read_text()
    docs = documents()
    assert docs["asyncapi.json"]["info"]["version"] == version.VERSION
    schemas = {name: doc for name, doc in docs.items() if name.endswith(".schema.json")}
    assert schemas and all(doc["x-contract-version"] == version.VERSION for doc in schemas.values())


@dataclass
class Incoming:
    """A delivery as the client's results reader sees it."""

    routing_key: str
    body: bytes
    headers: dict[str, Any]


@dataclass
class Exchange:
    """An exchange that keeps what is published to it."""

    name: str
    published: list[tuple[str, aio_pika.Message]] = field(default_factory=list)

    async def publish(self, message: aio_pika.Message, routing_key: str, **_: Any) -> None:
        self.published.append((routing_key, message))


@dataclass
class Channel:
    exchange: Exchange
    is_closed: bool = False

    async def get_exchange(self, name: str, ensure: bool = True) -> Exchange:
        return self.exchange


@dataclass
class Connection:
    channel_: Channel

    async def channel(self, **_: Any) -> Channel:
        return self.channel_


async def test_a_site_event_the_client_publishes_is_the_event_the_server_reads() -> None:
    sink = Exchange("director.sites")
    sites = Sites(Connection(Channel(sink)), "director.sites", "director", timeout=5)  # type: ignore[arg-type]
    site = json.loads(_examples()["site.created"].model_dump_json())["site"]
    created = await sites.publish_created(site, version=7)
    restart = await sites.publish_restart_requested(site["id"], version=7)
    for sent, (key, message) in zip((created, restart), sink.published, strict=True):
        headers = message.headers or {}
        assert headers[version.HEADER] == version.VERSION and message.user_id == "director"
        assert message.message_id == str(sent.event_id) and key == sent.type
        read = parse_event(message.body, key, headers[version.HEADER])
        assert read == sent and type(read) in (SiteCreated, SiteRestartRequested)


async def test_a_terminal_command_the_client_sends_is_the_command_the_server_reads() -> None:
    sink = Exchange("director.terminals")
    terminal = Terminal(
        Terminals(None, "director.terminals", "orchestrator.terminals", "director", "d.", 5), 7, 80, 24, uuid.uuid4()
    )  # type: ignore[arg-type]
    terminal._commands = sink  # type: ignore[assignment]
    await terminal.input(b"x" * 40_000)  # past one message's bound: in pieces
    commands = [parse_command(m.body, key, (m.headers or {})[version.HEADER]) for key, m in sink.published]
    assert all(isinstance(c, TerminalInput) for c in commands) and len(commands) == 3
    assert b"".join(c.raw for c in commands if isinstance(c, TerminalInput)) == b"x" * 40_000
    opened = TerminalOpen(session_id=terminal.session_id, site_id=7)
    assert parse_command(opened.model_dump_json().encode(), opened.type, version.VERSION) == opened


def test_what_the_server_answers_the_client_reads() -> None:
    stat = _examples()["files.stat.reply"]
    assert result_of(json.loads(replies.ok_reply(stat.result)), StatResult) == stat.result  # type: ignore[attr-defined]
    with pytest.raises(SiteNotFound, match="no site 7"):
        result_of(json.loads(replies.error_reply(ErrorCode.SITE_NOT_FOUND, "no site 7")), StatResult)
    deployed = _examples()["site.deployed"]
    read = client_results.parse(Incoming("site.deployed", deployed.model_dump_json().encode(), {}))  # type: ignore[arg-type]
    assert isinstance(read, SiteResult) and read == deployed


def test_a_message_of_another_major_version_is_refused_by_every_parser_with_what_it_could_read() -> None:
    event = _examples()["site.created"]
    body = event.model_dump_json().encode()
    assert parse_event(body, "site.created", None) == parse_event(body, "site.created", f"{version.MAJOR}.9.0") == event
    with pytest.raises(InvalidEvent, match="contract version") as refused:
        parse_event(body, "site.created", OTHER_MAJOR)
    assert refused.value.event_id == event.event_id and refused.value.site_id == 1  # its site.failed reaches Director
    command = TerminalOpen(session_id=uuid.uuid4(), site_id=7)
    with pytest.raises(InvalidEvent, match="contract version"):
        parse_command(command.model_dump_json().encode(), command.type, OTHER_MAJOR.encode())
    request = FilesStat(site_id=7, path="public")
    with pytest.raises(InvalidRequest, match="contract version"):
        parse_file_request(request.model_dump_json().encode(), request.type, "garbage")
    with pytest.raises(ContractMismatch):  # and the client refuses the server's of another major
        client_results.parse(Incoming("site.deployed", b"{}", {version.HEADER: OTHER_MAJOR}))  # type: ignore[arg-type]
