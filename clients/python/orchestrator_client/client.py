"""`Client`: one connection to the broker and everything Director does over it.

    async with await Client.connect("amqps://director@broker.school.example:5671/",
                                    password=secret, ca_file="/etc/director/rabbitmq-ca.pem") as client:
        event = await client.sites.publish_created(site, version=3)
        async with client.results.subscribe() as results: ...
        data = await client.files.read_all(7, "public/index.html")
        async with client.terminals.open(7) as term: ...

Nothing is declared or consumed until first used: a user with fewer rights (the observer, which
only reads results) uses the same client.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from aio_pika.abc import AbstractRobustConnection

from orchestrator_client import connection as connecting
from orchestrator_client.files import Files
from orchestrator_client.logs import Logs
from orchestrator_client.names import Names
from orchestrator_client.requests import Requests
from orchestrator_client.results import Results
from orchestrator_client.sites import Sites
from orchestrator_client.terminals import Terminals


def default_prefix(user: str) -> str:
    """Where a user's own queues are named: Director's `director.replies.`, anyone else's `<user>.`
    (the observer's `observer.`), as the broker's permissions have it."""
    return "director.replies." if user == "director" else f"{user}."


class Client:
    """Director's side of the bus, asynchronous (see `SyncClient` for code without an event loop).

    `sites` publishes site events; `results` reads results, health and drift; `files` and `logs`
    reach a site's directory and its log; `terminals` opens shells in the site's image.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        *,
        user: str = "director",
        reply_queue: str | None = None,
        queue_prefix: str | None = None,
        names: Names | None = None,
        timeout: float = 30.0,
    ) -> None:
        """`user`: the broker user (the messages' `user_id`); `reply_queue`: None for direct
        reply-to, else the name of a queue of the user's own for file and log replies
        (`director.replies.<anything>`); `queue_prefix`: where the user's own queues are named
        (`default_prefix`); `timeout`: how long a request waits for its reply, and a publish
        for its confirm."""
        names = names or Names()
        prefix = queue_prefix or default_prefix(user)
        self.connection = connection
        self.user = user
        self._requests = Requests(
            connection,
            names.files,
            user,
            reply_queue=reply_queue,
            timeout=timeout,
        )
        self.sites = Sites(connection, names.sites, user, timeout)
        self.results = Results(connection, names.results, names.site_results, prefix)
        self.files = Files(self._requests)
        self.logs = Logs(self._requests)
        self.terminals = Terminals(connection, names.terminals, names.terminal_updates, user, prefix, timeout)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        password: str | None = None,
        ca_file: str | Path | None = None,
        name: str = "orchestrator-client",
        reply_queue: str | None = None,
        queue_prefix: str | None = None,
        names: Names | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """Connect as the URL's user (`password` in place of the URL's, e.g. read from a secret;
        `ca_file` verifies an `amqps://` broker). See `connection` for the reconnect policy."""
        connection = await connecting.connect(url, password=password, ca_file=ca_file, name=name)
        user = connecting.user(url)
        return cls(
            connection, user=user, reply_queue=reply_queue, queue_prefix=queue_prefix, names=names, timeout=timeout
        )

    async def request(self, operation: str, body: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """A file or log request sent as given, unchecked: its reply's `result`, untyped (an error
        reply raises its error). For an operation of a newer orchestrator that this client has no
        method for yet, or a deliberately malformed request; everything else has its method."""
        return await self._requests.raw(operation, body, timeout)

    @property
    def reply_to(self) -> str:
        """Where the replies to file and log requests come (direct reply-to or the named queue)."""
        return self._requests.reply_to

    async def close(self) -> None:
        await self._requests.close()
        await self.connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
