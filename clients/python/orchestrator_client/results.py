"""What the orchestrator reports (results, health, drift, metrics), consumed with manual acknowledgement.

    async with client.results.subscribe() as results:      # Director's durable queue
        async for delivery in results:
            match delivery.message:
                case SiteResult(type="site.deployed"): ...
                case SiteHealth(): ...
                case SiteMetrics(): ...                        # every METRICS_SECONDS, per site
                case SiteCertificate(status="issued"): ...      # per domain, as it changes
            await delivery.ack()                               # only once it is handled

`subscribe()` reads Director's durable queue `orchestrator.site-results` (every site's results,
kept while nobody reads them). `watch(bindings)` declares a queue of the user's own (Director:
`director.replies.*`, the observer: `observer.*`), bound to `orchestrator.results` with
`bindings` (`site.*` by default; the observer may bind `site.` keys only): private and gone with
the connection, or durable under a name of its own (`watch(name="billing", durable=True)`).
`consume(handler)` runs a callback per message instead: acknowledged when it returns, rejected
when it raises (requeued once, then dropped).

Delivery is at least once: deduplicate by `causation_id` (results) or `event_id`. A message type
this client does not know (added by a newer orchestrator within the major version) is
acknowledged and skipped; one of another major version raises `ContractMismatch` and stays in the
queue, unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Self, get_args

import aio_pika.exceptions
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from orchestrator_client import publishing
from orchestrator_client.errors import ContractMismatch
from orchestrator_contract import version
from orchestrator_contract.certificates import SiteCertificate
from orchestrator_contract.metrics import NodeMetrics, OrchestratorMetrics, SiteMetrics
from orchestrator_contract.results import DriftReport, SiteHealth, SiteResult, SiteResultType

log = logging.getLogger("orchestrator_client.results")

Report = SiteResult | SiteHealth | SiteCertificate | DriftReport | SiteMetrics | NodeMetrics | OrchestratorMetrics
# Messages taken from the broker before they are acknowledged (per subscription).
DEFAULT_PREFETCH = 32


def parse(message: AbstractIncomingMessage) -> Report | None:
    """The report a message carries (by its routing key), None for a type this client does not
    know; ContractMismatch for another major version of the contract."""
    theirs = (message.headers or {}).get(version.HEADER)
    if not version.compatible(theirs):
        raise ContractMismatch(f"a {message.routing_key} of contract {theirs!r}; this client speaks {version.VERSION}")
    key = message.routing_key or ""
    if key in _RESULT_TYPES:
        return SiteResult.model_validate_json(message.body)
    model = _REPORTS.get(key)
    return None if model is None else model.model_validate_json(message.body)


_RESULT_TYPES = frozenset(get_args(SiteResultType))
# Every other report on the results exchange, by its routing key.
_REPORTS: dict[
    str, type[SiteHealth | SiteCertificate | DriftReport | SiteMetrics | NodeMetrics | OrchestratorMetrics]
] = {
    "site.health": SiteHealth,
    "site.certificate": SiteCertificate,
    "orchestrator.drift": DriftReport,
    "site.metrics": SiteMetrics,
    "node.metrics": NodeMetrics,
    "orchestrator.metrics": OrchestratorMetrics,
}


@dataclass
class Delivery:
    """One report and its acknowledgement."""

    message: Report
    routing_key: str
    redelivered: bool
    _incoming: AbstractIncomingMessage = field(repr=False)

    async def ack(self) -> None:
        """Handled: the broker forgets it."""
        await self._settle(self._incoming.ack())

    async def reject(self, requeue: bool = True) -> None:
        """Not handled: back into the queue (`requeue`) or dropped."""
        await self._settle(self._incoming.reject(requeue=requeue))

    async def _settle(self, settling: Awaitable[None]) -> None:
        try:
            await settling
        except (aio_pika.exceptions.ChannelInvalidStateError, ConnectionError):
            # It came on a channel the broker connection lost since: the broker delivers it again.
            log.info("could not settle a %s: its channel is gone; it will be redelivered", self.routing_key)


class Subscription:
    """A consumer on one queue: an async iterator of `Delivery`s, open while its context lasts."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        declare: Callable[[AbstractChannel], Awaitable[AbstractQueue]],
        prefetch: int,
    ) -> None:
        self._connection = connection
        self._declare = declare
        self._prefetch = prefetch
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._channel: AbstractChannel | None = None
        self.queue: str = ""

    async def __aenter__(self) -> Self:
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)  # bounds the inbox too
        try:
            async with publishing.refusals("reading results"):
                queue = await self._declare(self._channel)
                self.queue = queue.name
                await queue.consume(self._inbox.put)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()  # what was not acknowledged goes back to the queue

    async def _close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Delivery:
        return await self.next()

    async def next(self, timeout: float | None = None) -> Delivery:
        """The next delivery; TimeoutError if none came within `timeout` seconds."""
        while True:
            async with asyncio.timeout(timeout):
                incoming = await self._inbox.get()
            report = parse(incoming)
            if report is None:
                log.debug("skipped a %s: a type this client does not know", incoming.routing_key)
                await incoming.ack()
                continue
            return Delivery(report, incoming.routing_key or "", bool(incoming.redelivered), incoming)

    async def run(self, handler: Callable[[Report], Awaitable[None]]) -> None:
        """Call `handler` for each report until cancelled: acknowledged when it returns; when it
        raises, requeued once (a first delivery) or dropped (a redelivery), and logged."""
        async for delivery in self:
            try:
                await handler(delivery.message)
            except Exception:
                log.exception("the handler failed on a %s", delivery.routing_key)
                await delivery.reject(requeue=not delivery.redelivered)
            else:
                await delivery.ack()


class Results:
    def __init__(self, connection: AbstractRobustConnection, exchange: str, site_results: str, prefix: str) -> None:
        self._connection = connection
        self._exchange = exchange
        self._site_results = site_results
        self._prefix = prefix

    def subscribe(self, queue: str | None = None, *, prefetch: int = DEFAULT_PREFETCH) -> Subscription:
        """An existing queue: Director's durable `orchestrator.site-results` by default."""
        name = queue or self._site_results

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await channel.declare_queue(name, passive=True)

        return Subscription(self._connection, declare, prefetch)

    def watch(
        self,
        bindings: Sequence[str] = ("site.*",),
        *,
        name: str | None = None,
        durable: bool = False,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> Subscription:
        """A queue of the user's own, `<prefix><name>` (a random name by default), bound to the
        results exchange with each of `bindings`: exclusive and gone with the connection, or
        `durable` (kept, and filled, while nobody reads it; bounded by the broker's policy)."""
        queue = f"{self._prefix}{name or 'results-' + uuid.uuid4().hex[:12]}"

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            declared = await channel.declare_queue(
                queue, durable=durable, exclusive=not durable, auto_delete=not durable
            )
            for key in bindings:
                await declared.bind(self._exchange, key)
            return declared

        return Subscription(self._connection, declare, prefetch)

    async def consume(
        self,
        handler: Callable[[Report], Awaitable[None]],
        queue: str | None = None,
        *,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> None:
        """`subscribe(queue)` with `handler` called per report (see `Subscription.run`), until cancelled."""
        async with self.subscribe(queue, prefetch=prefetch) as subscription:
            await subscription.run(handler)
