"""`SyncClient`: the same API without an event loop of the caller's, for Django views and Celery
tasks. It owns a background thread running the loop of an async `Client` (`portal.Portal`); every
call blocks the calling thread until done, from any number of threads at once.

    client = SyncClient.connect("amqp://director:...@broker/")     # once per process, after a fork
    client.sites.publish_created(site, version=3)
    data = client.files.read_all(7, "public/index.html")
    with client.results.subscribe() as results:
        for delivery in results:
            ...
            delivery.ack()
    client.close()

The methods are the `Client`'s, with the same arguments, results and errors; iterators and
context managers are plain (`for`, `with`) instead of `async for`, `async with`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import IO, Any, Generic, Self, TypeVar, Unpack

from orchestrator_client import connection as connecting
from orchestrator_client.client import Client, Options
from orchestrator_client.databases import RESET_TIMEOUT, Databases
from orchestrator_client.files import DEFAULT_CHUNK, Files
from orchestrator_client.logs import LogFollow, Logs
from orchestrator_client.metrics import Metrics
from orchestrator_client.portal import Portal
from orchestrator_client.results import DEFAULT_PREFETCH, Delivery, Report, Results, Subscription
from orchestrator_client.sites import Sites
from orchestrator_client.terminals import Terminal, Terminals
from orchestrator_contract.databases import CredentialsResult, DatabaseUsageResult, QueryResult
from orchestrator_contract.files import (
    Entry,
    ListResult,
    LogLine,
    LogsUpdate,
    ReadResult,
    StatResult,
    UsageResult,
    WriteResult,
)
from orchestrator_contract.metrics import DEFAULT_PAGE, MAX_PAGE, NodeMetrics, SiteMetrics, SitesPage
from orchestrator_contract.sites import (
    ImageRecipe,
    Site,
    SiteCreated,
    SiteDeleted,
    SiteEvent,
    SiteImageRequested,
    SiteRestartRequested,
    SiteUpdated,
)
from orchestrator_contract.terminals import TerminalUpdate

A = TypeVar("A")
C = TypeVar("C", bound=AbstractAsyncContextManager[Any])


class SyncClient:
    """Director's side of the bus for synchronous code (see the module)."""

    def __init__(self, portal: Portal, client: Client) -> None:
        self._portal = portal
        self.client = client
        """The async client underneath (its loop runs in the portal's thread)."""
        self.sites = SyncSites(portal, client.sites)
        self.results = SyncResults(portal, client.results)
        self.files = SyncFiles(portal, client.files)
        self.logs = SyncLogs(portal, client.logs)
        self.terminals = SyncTerminals(portal, client.terminals)
        self.metrics = SyncMetrics(portal, client.metrics)
        self.databases = SyncDatabases(portal, client.databases)

    @classmethod
    def connect(cls, url: str, **options: Unpack[Options]) -> SyncClient:
        """`Client.connect`, in a loop thread of the new client's own."""
        portal = Portal(options.get("name", connecting.NAME))
        try:
            client = portal.call(Client.connect, url, **options)
        except BaseException:
            portal.stop()
            raise
        return cls(portal, client)

    def request(self, operation: str, body: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """`Client.request`: a request sent as given, its reply's result untyped."""
        return self._portal.call(self.client.request, operation, body, timeout)

    def close(self) -> None:
        try:
            self._portal.call(self.client.close)
        finally:
            self._portal.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Twin(Generic[A]):
    """The blocking twin of an async object: its methods run the object's on the portal's loop."""

    def __init__(self, portal: Portal, target: A) -> None:
        self._p, self._a = portal, target


class _ContextTwin(_Twin[C]):
    """The twin of an async context manager: `with` it."""

    def __enter__(self) -> Self:
        self._p.enter(self._a)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._p.exit(self._a, *exc)


class SyncSites(_Twin[Sites]):
    """`Sites`, blocking (the version rule and how events are published: `orchestrator_client.sites`)."""

    def publish(self, event: SiteEvent) -> None:
        self._p.call(self._a.publish, event)

    def publish_created(
        self, site: Site | Mapping[str, Any], version: int, *, event_id: uuid.UUID | None = None
    ) -> SiteCreated:
        return self._p.call(self._a.publish_created, site, version, event_id=event_id)

    def publish_updated(
        self, site: Site | Mapping[str, Any], version: int, *, event_id: uuid.UUID | None = None
    ) -> SiteUpdated:
        return self._p.call(self._a.publish_updated, site, version, event_id=event_id)

    def publish_deleted(self, site_id: int, version: int, *, event_id: uuid.UUID | None = None) -> SiteDeleted:
        return self._p.call(self._a.publish_deleted, site_id, version, event_id=event_id)

    def publish_restart_requested(
        self, site_id: int, version: int, *, event_id: uuid.UUID | None = None
    ) -> SiteRestartRequested:
        return self._p.call(self._a.publish_restart_requested, site_id, version, event_id=event_id)

    def publish_image_requested(
        self, site_id: int, version: int, recipe: ImageRecipe | Mapping[str, Any], *, event_id: uuid.UUID | None = None
    ) -> SiteImageRequested:
        return self._p.call(self._a.publish_image_requested, site_id, version, recipe, event_id=event_id)


class SyncDelivery(_Twin[Delivery]):
    """A `Delivery`, blocking."""

    def __init__(self, portal: Portal, delivery: Delivery) -> None:
        super().__init__(portal, delivery)
        self.message: Report = delivery.message
        self.routing_key = delivery.routing_key
        self.redelivered = delivery.redelivered

    def ack(self) -> None:
        self._p.call(self._a.ack)

    def reject(self, requeue: bool = True) -> None:
        self._p.call(self._a.reject, requeue)


class SyncSubscription(_ContextTwin[Subscription]):
    """A `Subscription`: `with` it, then `for delivery in it` (or `next(timeout)`, or `run`)."""

    @property
    def queue(self) -> str:
        return self._a.queue

    def __iter__(self) -> Iterator[SyncDelivery]:
        while True:
            yield self.next()

    def next(self, timeout: float | None = None) -> SyncDelivery:
        """The next delivery; TimeoutError if none came within `timeout` seconds."""
        return SyncDelivery(self._p, self._p.call(self._a.next, timeout))

    def run(self, handler: Callable[[Report], None]) -> None:
        """Call `handler` (in this thread) per report, forever: acknowledged when it returns;
        when it raises, requeued once (a first delivery) or dropped (a redelivery)."""
        for delivery in self:
            try:
                handler(delivery.message)
            except Exception:
                delivery.reject(requeue=not delivery.redelivered)
            else:
                delivery.ack()


class SyncResults(_Twin[Results]):
    """`Results`, blocking."""

    def subscribe(self, queue: str | None = None, *, prefetch: int = DEFAULT_PREFETCH) -> SyncSubscription:
        return SyncSubscription(self._p, self._a.subscribe(queue, prefetch=prefetch))

    def watch(
        self,
        bindings: tuple[str, ...] = ("site.*",),
        *,
        name: str | None = None,
        durable: bool = False,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> SyncSubscription:
        return SyncSubscription(self._p, self._a.watch(bindings, name=name, durable=durable, prefetch=prefetch))

    def consume(
        self, handler: Callable[[Report], None], queue: str | None = None, *, prefetch: int = DEFAULT_PREFETCH
    ) -> None:
        with self.subscribe(queue, prefetch=prefetch) as subscription:
            subscription.run(handler)


class SyncFiles(_Twin[Files]):
    """`Files`, blocking."""

    def list(self, site_id: int, path: str = "", cursor: str | None = None, limit: int = 200) -> ListResult:
        return self._p.call(self._a.list, site_id, path, cursor, limit)

    def list_all(self, site_id: int, path: str = "", limit: int = 1000) -> Iterator[Entry]:
        return self._p.iterate(self._a.list_all(site_id, path, limit))

    def stat(self, site_id: int, path: str = "") -> StatResult:
        return self._p.call(self._a.stat, site_id, path)

    def read(self, site_id: int, path: str, offset: int = 0, length: int | None = None) -> tuple[bytes, ReadResult]:
        return self._p.call(self._a.read, site_id, path, offset, length)

    def download(self, site_id: int, path: str, *, chunk: int = DEFAULT_CHUNK, window: int = 4) -> Iterator[bytes]:
        return self._p.iterate(self._a.download(site_id, path, chunk=chunk, window=window))

    def read_all(self, site_id: int, path: str, *, chunk: int = DEFAULT_CHUNK, window: int = 4) -> bytes:
        return self._p.call(self._a.read_all, site_id, path, chunk=chunk, window=window)

    def write(
        self,
        site_id: int,
        path: str,
        data: bytes | IO[bytes],
        *,
        chunk: int = DEFAULT_CHUNK,
        window: int = 8,
        if_match: str | None = None,
        if_none_match: bool = False,
        mode: int | None = None,
    ) -> WriteResult:
        return self._p.call(
            self._a.write, site_id, path, data, chunk=chunk, window=window,
            if_match=if_match, if_none_match=if_none_match, mode=mode,
        )  # fmt: skip

    def mkdir(self, site_id: int, path: str, *, parents: bool = False, mode: int | None = None) -> Entry:
        return self._p.call(self._a.mkdir, site_id, path, parents=parents, mode=mode)

    def rename(self, site_id: int, path: str, to: str, *, overwrite: bool = False) -> Entry:
        return self._p.call(self._a.rename, site_id, path, to, overwrite=overwrite)

    def delete(self, site_id: int, path: str, *, recursive: bool = False) -> int:
        return self._p.call(self._a.delete, site_id, path, recursive=recursive)

    def chmod(self, site_id: int, path: str, mode: int) -> Entry:
        return self._p.call(self._a.chmod, site_id, path, mode)

    def usage(self, site_id: int, path: str = "") -> UsageResult:
        return self._p.call(self._a.usage, site_id, path)

    def archive(self, site_id: int, path: str = "") -> Iterator[bytes]:
        return self._p.iterate(self._a.archive(site_id, path))


class SyncLogFollow(_ContextTwin[LogFollow]):
    """A `LogFollow`: `with` it, then `for update in it` (or `next(timeout)`)."""

    @property
    def ended(self) -> LogsUpdate | None:
        return self._a.ended

    def __iter__(self) -> Iterator[LogsUpdate]:
        return self._p.iterate(self._a)

    def next(self, timeout: float) -> LogsUpdate | None:
        return self._p.call(self._a.next, timeout)

    def stop(self) -> bool:
        return self._p.call(self._a.stop)


class SyncLogs(_Twin[Logs]):
    """`Logs`, blocking."""

    def tail(self, site_id: int, lines: int = 100) -> list[LogLine]:
        return self._p.call(self._a.tail, site_id, lines)

    def follow(self, site_id: int, lines: int = 0) -> SyncLogFollow:
        return SyncLogFollow(self._p, self._a.follow(site_id, lines))


class SyncTerminal(_ContextTwin[Terminal]):
    """A `Terminal`: `with` it (opened on entry, closed on exit)."""

    @property
    def session_id(self) -> uuid.UUID:
        return self._a.session_id

    @property
    def lost(self) -> int:
        return self._a.lost

    @property
    def ended(self) -> TerminalUpdate | None:
        return self._a.ended

    def input(self, data: bytes | str) -> None:
        self._p.call(self._a.input, data)

    def resize(self, cols: int, rows: int) -> None:
        self._p.call(self._a.resize, cols, rows)

    def close(self, timeout: float | None = None) -> None:
        self._p.call(self._a.close, timeout)

    def read(self, timeout: float | None = None) -> bytes | None:
        return self._p.call(self._a.read, timeout)

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        return self._p.call(self._a.read_until, marker, timeout)

    def output(self) -> Iterator[bytes]:
        return self._p.iterate(self._a.output())


class SyncTerminals(_Twin[Terminals]):
    """`Terminals`, blocking."""

    def open(
        self, site_id: int, *, cols: int = 80, rows: int = 24, session_id: uuid.UUID | None = None
    ) -> SyncTerminal:
        return SyncTerminal(self._p, self._a.open(site_id, cols=cols, rows=rows, session_id=session_id))


class SyncMetrics(_Twin[Metrics]):
    """`Metrics`, blocking."""

    def site(self, site_id: int) -> SiteMetrics | None:
        return self._p.call(self._a.site, site_id)

    def sites(self, after: int | None = None, limit: int = DEFAULT_PAGE) -> SitesPage:
        return self._p.call(self._a.sites, after, limit)

    def all_sites(self, limit: int = MAX_PAGE) -> Iterator[SiteMetrics]:
        return self._p.iterate(self._a.all_sites(limit))

    def nodes(self) -> list[NodeMetrics]:
        return self._p.call(self._a.nodes)


class SyncDatabases(_Twin[Databases]):
    """`Databases`, blocking."""

    def credentials(self, site_id: int) -> CredentialsResult:
        return self._p.call(self._a.credentials, site_id)

    def reset_password(self, site_id: int, *, timeout: float = RESET_TIMEOUT) -> CredentialsResult:
        return self._p.call(self._a.reset_password, site_id, timeout=timeout)

    def query(self, site_id: int, sql: str) -> QueryResult:
        return self._p.call(self._a.query, site_id, sql)

    def usage(self, site_id: int) -> DatabaseUsageResult:
        return self._p.call(self._a.usage, site_id)

    def dump(self, site_id: int) -> Iterator[bytes]:
        return self._p.iterate(self._a.dump(site_id))
