"""`Client`: one connection to the broker and everything Director does over it.

    async with await Client.connect("amqps://director@broker.school.example:5671/",
                                    password=secret, ca_file="/etc/director/rabbitmq-ca.pem") as client:
        event = await client.sites.publish_created(site, version=3)
        async with client.results.subscribe() as results: ...
        data = await client.files.read_all(7, "public/index.html")
        async with client.terminals.open(7) as term: ...
        latest = await client.metrics.site(7)
        rows = await client.databases.query(7, "SELECT count(*) FROM notes")

Nothing is declared or consumed until first used: a user with fewer rights (the observer, which
only reads results) uses the same client.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypedDict, Unpack

from aio_pika.abc import AbstractRobustConnection

from orchestrator_client import connection as connecting
from orchestrator_client.databases import Databases
from orchestrator_client.files import Files
from orchestrator_client.logs import Logs
from orchestrator_client.metrics import Metrics
from orchestrator_client.names import Names
from orchestrator_client.requests import Requests
from orchestrator_client.results import Results
from orchestrator_client.sites import Sites
from orchestrator_client.terminals import Terminals
from orchestrator_contract import exchanges

TIMEOUT = 30.0


class Setup(TypedDict, total=False):
    """How a client uses the broker: keyword arguments of `Client`, `Client.connect` and
    `SyncClient.connect`, each optional."""

    reply_queue: str | None
    """None (the default): direct reply-to; else the name of a queue of the user's own to declare
    for the replies to requests (`director.replies.<anything>`)."""
    queue_prefix: str | None
    """Where the user's own queues are named (None: `default_prefix`)."""
    names: Names | None
    """The broker's objects, for a deployment that renamed them (None: `Names()`)."""
    timeout: float
    """How long a request waits for its reply (a database password reset: its own,
    `databases.RESET_TIMEOUT`) and a publish for its confirm; `TIMEOUT` by default."""


class Options(Setup, total=False):
    """`Client.connect`'s keyword arguments (`SyncClient.connect` takes the same)."""

    password: str | None
    """In place of the URL's, e.g. read from a secret."""
    ca_file: str | Path | None
    """The CA that verifies an `amqps://` broker."""
    name: str
    """The connection's name on the broker (`connection.NAME`)."""


def default_prefix(user: str) -> str:
    """Where a user's own queues are named: Director's `director.replies.`, anyone else's `<user>.`
    (the observer's `observer.`), as the broker's permissions have it."""
    return exchanges.REPLY_QUEUE_PREFIX if user == "director" else f"{user}."


class Client:
    """Director's side of the bus, asynchronous (see `SyncClient` for code without an event loop).

    `sites` publishes site events; `results` reads results, health, drift and metrics; `files`
    and `logs` reach a site's directory and its log; `terminals` opens shells in the site's image;
    `metrics` asks for the latest figures; `databases` manages a site's database.
    """

    def __init__(self, connection: AbstractRobustConnection, *, user: str = "director", **setup: Unpack[Setup]) -> None:
        """`user`: the broker user (the messages' `user_id`); `setup`: see `Setup`."""
        names = setup.get("names") or Names()
        prefix = setup.get("queue_prefix") or default_prefix(user)
        timeout = setup.get("timeout", TIMEOUT)
        self.connection = connection
        self.user = user
        self._requests = Requests(connection, names, user, reply_queue=setup.get("reply_queue"), timeout=timeout)
        self.sites = Sites(connection, names.sites, user, timeout)
        self.results = Results(connection, names.results, names.site_results, prefix)
        self.files = Files(self._requests)
        self.logs = Logs(self._requests)
        self.metrics = Metrics(self._requests)
        self.databases = Databases(self._requests)
        self.terminals = Terminals(connection, names.terminals, names.terminal_updates, user, prefix, timeout)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        password: str | None = None,
        ca_file: str | Path | None = None,
        name: str = connecting.NAME,
        **setup: Unpack[Setup],
    ) -> Self:
        """Connect as the URL's user (`Options` says what each argument is). See `connection` for
        the reconnect policy."""
        connection = await connecting.connect(url, password=password, ca_file=ca_file, name=name)
        return cls(connection, user=connecting.user(url), **setup)

    async def request(self, operation: str, body: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """A request sent as given, unchecked (to the exchange `Names.exchange_of` says): its
        reply's `result`, untyped (an error reply raises its error). For an operation of a newer
        orchestrator that this client has no method for yet, or a deliberately malformed request;
        everything else has its method."""
        return await self._requests.raw(operation, body, timeout)

    @property
    def reply_to(self) -> str:
        """Where the replies to requests come (direct reply-to or the named queue)."""
        return self._requests.reply_to

    async def close(self) -> None:
        await self._requests.close()
        await self.connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
