"""The client's typed requests (metrics and site databases) against a broker faked at aio-pika's
edge: each method publishes the contract's request to its exchange with the operation as routing
key, reads the reply into the contract's model and raises an error reply as its typed error; the
sync client does the same from a plain thread. (The real broker and orchestrator: tests/director,
tests/integration/test_metrics.py and test_databases.py.)"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.schemas.metrics_examples import metrics_examples
from orchestrator_client import Client, SyncClient, errors
from orchestrator_client.portal import Portal
from orchestrator_contract import version
from orchestrator_contract.databases import CredentialsResult, DatabaseUsageResult, QueryResult
from orchestrator_contract.metrics import NodeMetrics, SiteMetrics

Reply = dict[str, Any]
# What the fake orchestrator answers to one request: (exchange, routing key, body) -> replies.
Answer = Callable[[str, str, dict[str, Any]], list[Reply]]


@dataclass
class Sent:
    exchange: str
    key: str
    body: dict[str, Any]
    user_id: str | None
    headers: dict[str, Any]


@dataclass
class Incoming:
    correlation_id: str | None
    body: bytes
    headers: dict[str, Any] = field(default_factory=lambda: {version.HEADER: version.VERSION})


@dataclass
class Broker:
    """A broker and an orchestrator behind it: every publish is recorded and answered."""

    answer: Answer
    sent: list[Sent] = field(default_factory=list)
    consumers: list[Callable[[Incoming], Awaitable[None]]] = field(default_factory=list)

    async def channel(self, publisher_confirms: bool = True) -> FakeChannel:
        return FakeChannel(self)


class FakeQueue:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def consume(self, callback: Callable[[Incoming], Awaitable[None]], no_ack: bool = False) -> str:
        self.broker.consumers.append(callback)
        return "tag"


class FakeChannel:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.close_callbacks: set[object] = set()

    async def get_queue(self, name: str, ensure: bool = True) -> FakeQueue:
        return FakeQueue(self.broker)

    async def declare_queue(self, name: str, **_: object) -> FakeQueue:
        return FakeQueue(self.broker)

    async def get_exchange(self, name: str, ensure: bool = True) -> FakeExchange:
        return FakeExchange(name, self.broker)


class FakeExchange:
    def __init__(self, name: str, broker: Broker) -> None:
        self.name, self.broker = name, broker

    async def publish(self, message: Any, routing_key: str, *, mandatory: bool, timeout: float) -> None:
        body = json.loads(message.body)
        self.broker.sent.append(Sent(self.name, routing_key, body, message.user_id, dict(message.headers or {})))
        for reply in self.broker.answer(self.name, routing_key, body):
            for consume in self.broker.consumers:
                asyncio.get_running_loop().call_soon(
                    lambda c=consume, r=reply: asyncio.ensure_future(
                        c(Incoming(message.correlation_id, json.dumps(r).encode()))
                    )
                )


def ok(result: Any) -> Reply:
    return {"ok": True, "result": result}


def refused(code: str, message: str) -> Reply:
    return {"ok": False, "error": {"code": code, "message": message}}


EXAMPLES = metrics_examples()
SITE: SiteMetrics = EXAMPLES["site.metrics"]  # type: ignore[assignment]
NODE: NodeMetrics = EXAMPLES["node.metrics"]  # type: ignore[assignment]
CREDENTIALS = {
    "kind": "postgres", "host": "198.18.213.1", "port": 5432, "name": "site_0007", "user": "site_0007_a",
    "password": "s3cret", "url": "postgresql://site_0007_a:s3cret@198.18.213.1:5432/site_0007",
}  # fmt: skip
DUMP = b"PGDMP" + bytes(range(256)) * 40


def dump_chunks(data: bytes, size: int = 4000, *, sha256: str | None = None, skip: int | None = None) -> list[Reply]:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    replies = []
    for seq, piece in enumerate(pieces):
        last = seq == len(pieces) - 1
        chunk = {"seq": seq, "data": base64.b64encode(piece).decode(), "last": last, "format": "pg_custom"}
        if last:
            chunk |= {"sha256": sha256 or hashlib.sha256(data).hexdigest(), "size": len(data)}
        if seq != skip:
            replies.append(ok(chunk))
    return replies


def orchestrator(exchange: str, key: str, body: dict[str, Any]) -> list[Reply]:
    """Answers as the orchestrator does, by exchange and routing key."""
    site = json.loads(SITE.model_dump_json())
    match exchange, key:
        case "director.files", "metrics.site":
            return [ok({"site_id": body["site_id"], "metrics": site if body["site_id"] == 1 else None})]
        case "director.files", "metrics.sites":
            # Sites 1..5, a page at a time.
            first = (body.get("after") or 0) + 1
            ids = list(range(first, min(first + body["limit"], 6)))
            page = [site | {"site_id": n} for n in ids]
            return [ok({"sites": page, "next_after": ids[-1] if ids and ids[-1] < 5 else None})]
        case "director.files", "metrics.nodes":
            return [ok({"nodes": [json.loads(NODE.model_dump_json())]})]
        case "director.databases", "database.credentials" | "database.reset_password":
            if body["site_id"] == 8:
                return [refused("no_database", "site 8 has no database")]
            return [ok(CREDENTIALS)]
        case "director.databases", "database.query":
            if ";" in body["sql"]:
                return [refused("multiple_statements", "one statement at a time")]
            return [ok({"columns": ["id"], "rows": [[1], [2]], "truncated": False, "status": "2 rows"})]
        case "director.databases", "database.usage":
            return [ok({"kind": "mysql", "name": "site_0007", "bytes": 16384})]
        case "director.databases", "database.dump":
            return dump_chunks(DUMP, skip=1 if body["site_id"] == 9 else None)
        case _:
            return [refused("invalid_request", f"no {key} on {exchange}")]


@pytest.fixture
async def client() -> Client:
    broker = Broker(orchestrator)
    made = Client(broker, timeout=2)  # type: ignore[arg-type]
    made.broker = broker  # type: ignore[attr-defined]
    return made


def sent(client: Client) -> list[Sent]:
    return client.broker.sent  # type: ignore[attr-defined,no-any-return]


async def test_metrics_requests_go_to_the_files_exchange_and_come_back_as_the_contracts_models(
    client: Client,
) -> None:
    assert await client.metrics.site(1) == SITE
    assert await client.metrics.site(2) is None  # no window of it yet
    page = await client.metrics.sites(limit=2)
    assert [m.site_id for m in page.sites] == [1, 2] and page.next_after == 2
    assert [m.site_id async for m in client.metrics.all_sites(limit=2)] == [1, 2, 3, 4, 5]
    assert await client.metrics.nodes() == [NODE]
    keys = [(s.exchange, s.key) for s in sent(client)]
    assert set(keys) == {("director.files", "metrics.site"), ("director.files", "metrics.sites"),
                         ("director.files", "metrics.nodes")}  # fmt: skip
    assert sent(client)[0].body == {"type": "metrics.site", "site_id": 1}
    assert [s.body["after"] for s in sent(client) if s.key == "metrics.sites"][1:] == [None, 2, 4]
    assert all(s.user_id == "director" and s.headers[version.HEADER] == version.VERSION for s in sent(client))


async def test_database_requests_go_to_the_databases_exchange_typed_both_ways(client: Client) -> None:
    login = await client.databases.credentials(7)
    assert isinstance(login, CredentialsResult) and login.password == "s3cret" and login.kind == "postgres"
    assert (await client.databases.reset_password(7)).user == "site_0007_a"
    rows = await client.databases.query(7, "SELECT id FROM notes")
    assert isinstance(rows, QueryResult) and rows.rows == [[1], [2]] and rows.columns == ["id"]
    usage = await client.databases.usage(7)
    assert isinstance(usage, DatabaseUsageResult) and usage.bytes == 16384
    assert b"".join([data async for data in client.databases.dump(7)]) == DUMP
    assert {s.exchange for s in sent(client)} == {"director.databases"}
    assert [s.key for s in sent(client)] == [
        "database.credentials", "database.reset_password", "database.query", "database.usage", "database.dump",
    ]  # fmt: skip
    assert sent(client)[2].body == {"type": "database.query", "site_id": 7, "sql": "SELECT id FROM notes"}


async def test_database_refusals_are_typed_errors_and_a_broken_dump_is_an_io_error(client: Client) -> None:
    with pytest.raises(errors.NoDatabase, match="site 8"):
        await client.databases.credentials(8)
    with pytest.raises(errors.MultipleStatements) as caught:
        await client.databases.query(7, "SELECT 1; DROP TABLE notes")
    assert caught.value.code == "multiple_statements"
    with pytest.raises(errors.IoError, match="chunk 2 arrived, 1 expected"):
        async for _ in client.databases.dump(9):
            pass


async def test_a_raw_request_goes_where_its_operation_belongs(client: Client) -> None:
    assert (await client.request("database.usage", {"site_id": 7}))["bytes"] == 16384
    with pytest.raises(errors.InvalidRequest):
        await client.request("files.of_the_future", {})
    assert [(s.exchange, s.key) for s in sent(client)] == [
        ("director.databases", "database.usage"), ("director.files", "files.of_the_future"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("replies", "why"),
    [
        (dump_chunks(DUMP, sha256="0" * 64), "sha256 does not match"),
        ([ok({"seq": 0, "data": base64.b64encode(b"abc").decode(), "last": True, "format": "sql",
              "sha256": hashlib.sha256(b"abc").hexdigest(), "size": 4})], "4 bytes, 3 arrived"),
    ],
)  # fmt: skip
async def test_a_dump_that_does_not_add_up_is_refused(replies: list[Reply], why: str) -> None:
    client = Client(Broker(lambda *_: replies), timeout=2)  # type: ignore[arg-type]
    with pytest.raises(errors.IoError, match=why):
        async for _ in client.databases.dump(7):
            pass


@pytest.fixture
def sync_client() -> Iterator[SyncClient]:
    portal = Portal("test-sync-client")

    async def make() -> Client:
        return Client(Broker(orchestrator), timeout=2)  # type: ignore[arg-type]

    try:
        yield SyncClient(portal, portal.call(make))
    finally:
        portal.stop()


def test_the_sync_client_asks_the_same_from_a_plain_thread(sync_client: SyncClient) -> None:
    assert sync_client.metrics.site(1) == SITE
    assert [m.site_id for m in sync_client.metrics.all_sites(limit=3)] == [1, 2, 3, 4, 5]
    assert sync_client.metrics.nodes() == [NODE]
    assert sync_client.databases.credentials(7).url.startswith("postgresql://")
    assert sync_client.databases.query(7, "SELECT id FROM notes").rows == [[1], [2]]
    assert b"".join(sync_client.databases.dump(7)) == DUMP
    with pytest.raises(errors.NoDatabase):
        sync_client.databases.reset_password(8)
