"""The broker adapter: connect, consume, settle, publish. The only module that knows aio-pika messages.

Settlement happens in one place (`Consumer._settle_*`): success -> publish the result with
confirms, then ack; permanent error -> `site.failed` + a dead letter carrying the reason, then
ack; transient error past the in-process budget -> the delayed-retry queue, then ack. Nothing is
acked before the broker has confirmed what replaces it, so a crash at any point duplicates at
worst and never loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from yarl import URL

from orchestrator import envelope as env
from orchestrator import retry, topology
from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError, PermanentError, PublishFailed
from orchestrator.events import InboundEvent, ResultEvent, failed
from orchestrator.handlers import Context, dispatch
from orchestrator.logs import fields

log = logging.getLogger("orchestrator.bus")
# Pauses between attempts to publish a result or a copy before giving the message back.
PUBLISH_RETRY_PAUSES = (1.0, 3.0, 9.0)

PUBLISH_ERRORS = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    asyncio.TimeoutError,
    ConnectionError,
    RuntimeError,  # aio-pika raises it for a channel that is closed mid-reconnect
)


async def connect(
    url: str, settings: Settings, stop: asyncio.Event | None = None, *, patient: bool = True
) -> AbstractRobustConnection:
    """A robust connection. `patient`: wait for the broker (until `stop`) instead of failing at once."""
    target = URL(url)
    if "heartbeat" not in target.query:
        target = target.update_query(heartbeat=settings.heartbeat_seconds)
    errors = (TimeoutError, ConnectionError, OSError, aiormq.exceptions.AMQPError)
    async for attempt in retry.until_ready("the broker", errors if patient else (), stop):
        with attempt:
            return await aio_pika.connect_robust(
                target,
                ssl_context=_ssl_context(settings) if target.scheme == "amqps" else None,
                client_properties={"connection_name": "orchestrator"},
            )
    raise AssertionError("unreachable: the retry loop returns or raises")


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.amqp_ca_file) if settings.amqp_ca_file else None)
    if settings.amqp_cert_file:
        context.load_cert_chain(
            str(settings.amqp_cert_file), str(settings.amqp_key_file) if settings.amqp_key_file else None
        )
    return context


async def publish(
    exchange: AbstractExchange,
    routing_key: str,
    body: bytes,
    *,
    timeout: float,
    headers: Mapping[str, Any] | None = None,
    message_id: str | None = None,
    correlation_id: str | None = None,
    user_id: str | None = None,
    content_type: str | None = "application/json",
) -> None:
    """Publish persistently with `mandatory` and wait for the broker's confirm; PublishFailed if not."""
    message = aio_pika.Message(
        body,
        headers=dict(headers or {}),
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        user_id=user_id,
        timestamp=datetime.now(UTC),
        app_id="orchestrator",
    )
    try:
        await exchange.publish(message, routing_key, mandatory=True, timeout=timeout)
    except PUBLISH_ERRORS as exc:
        raise PublishFailed(f"publish to {exchange.name!r} with key {routing_key!r} failed: {exc!r}") from exc


class SiteLocks:
    """One asyncio lock per site, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: defaultdict[int, int] = defaultdict(int)

    @contextlib.asynccontextmanager
    async def hold(self, site_id: int | None) -> AsyncIterator[None]:
        if site_id is None:
            yield
            return
        self._users[site_id] += 1
        lock = self._locks.setdefault(site_id, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            self._users[site_id] -= 1
            if not self._users[site_id]:
                del self._users[site_id], self._locks[site_id]


class Consumer:
    def __init__(self, settings: Settings, ctx: Context) -> None:
        self.settings = settings
        self.ctx = ctx
        self._locks = SiteLocks()
        # Taken inside a site's lock: only work that can run counts against the bound.
        self._workers = asyncio.Semaphore(settings.concurrency)
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._topology: topology.Topology | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then finish in-flight messages within the grace period."""
        connection = await connect(self.settings.broker_url(), self.settings, stop)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.set_qos(prefetch_count=max(self.settings.prefetch, self.settings.concurrency))
            self._topology = await topology.declare(channel, self.settings)
            await self._topology.work_queue.consume(self._on_message)
            log.info("consuming", extra=fields(queue=self.settings.work_queue, concurrency=self.settings.concurrency))
            await stop.wait()
            # The consumer stays registered until the connection closes: cancelling it now would
            # hand the queue to a standby replica while our in-flight work on some site runs on.
            # New deliveries are left unacked and go back to the queue on close.
            self._stopping = True
            log.info("stopping: no new messages; finishing in-flight ones", extra=fields(inflight=self._inflight))
            try:
                await asyncio.wait_for(self._idle.wait(), self.settings.shutdown_grace_seconds)
            except TimeoutError:
                log.warning(
                    "grace period over; unfinished messages go back to the queue", extra=fields(inflight=self._inflight)
                )
        finally:
            await connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            return
        self._inflight += 1
        self._idle.clear()
        try:
            await self._handle(message)
        except Exception:
            # A bug outside the handler's own error handling: never leave the message hanging
            # (it would hold a prefetch slot); the broker dead-letters it with its x-death reason.
            log.exception("message could not be settled; rejecting it to the dead letters")
            with contextlib.suppress(*PUBLISH_ERRORS):
                await message.nack(requeue=False)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        started = time.monotonic()
        envelope = to_envelope(message)
        publisher: str | None = None
        try:
            publisher = env.authenticate(
                envelope,
                inbound_exchange=self.settings.inbound_exchange,
                requeue_exchange=self.settings.requeue_exchange,
                allowed=self.settings.allowed_publishers,
            )
            event = env.parse_event(envelope.body, envelope.original_routing_key)
        except PermanentError as error:
            # `publisher` stays None when authentication failed: such a letter is never replayed.
            async with self._locks.hold(error.site_id):
                await self._settle_failure(message, envelope, None, error, started, publisher)
            return
        async with self._locks.hold(event.site.id), self._workers:
            try:
                async for attempt in retry.in_process(self.settings.retry_budget_seconds):
                    with attempt:
                        result = await dispatch(event, self.ctx)
            except OrchestratorError as error:
                await self._settle_failure(message, envelope, event, error, started, publisher)
            except Exception as exc:  # a bug: keep serving, dead-letter the event with the evidence
                log.exception("unexpected error", extra=fields(event_id=str(event.event_id)))
                bug = OrchestratorError(f"unexpected error: {exc!r}")
                await self._settle_failure(message, envelope, event, bug, started, publisher)
            else:
                await self._settle_success(message, envelope, event, result, started)

    async def _settle_success(
        self,
        message: AbstractIncomingMessage,
        envelope: env.Envelope,
        event: InboundEvent,
        result: ResultEvent,
        started: float,
    ) -> None:
        if await self._publish_or_requeue(message, functools.partial(self._publish_result, result, envelope)):
            await _ack(message)
            _log_outcome(envelope, event.site.id, event, result.type, None, started)

    async def _settle_failure(
        self,
        message: AbstractIncomingMessage,
        envelope: env.Envelope,
        event: InboundEvent | None,
        error: OrchestratorError,
        started: float,
        publisher: str | None,
    ) -> None:
        attempts = envelope.attempts + 1
        step = retry.after_failure(error, attempts, self.settings.max_attempts)
        site_id = event.site.id if event else error.site_id
        now = datetime.now(UTC).isoformat()
        headers = {
            # A PUBLISHER header we did not write is a forgery: only an authenticated one is kept.
            **{k: v for k, v in envelope.headers.items() if k not in (*env.BROKER_DEATH_HEADERS, env.PUBLISHER)},
            env.ATTEMPTS: attempts,
            env.ROUTING_KEY: envelope.original_routing_key,
            env.EXCHANGE: envelope.headers.get(env.EXCHANGE) or envelope.exchange or self.settings.inbound_exchange,
            env.ERROR_CODE: error.code,
            env.ERROR_MESSAGE: error.message[:1000],
            env.FIRST_FAILURE: envelope.headers.get(env.FIRST_FAILURE) or now,
            env.LAST_FAILURE: now,
        }
        if publisher:
            headers[env.PUBLISHER] = publisher
        assert self._topology is not None
        copy: dict[str, Any] = dict(
            body=envelope.body,
            timeout=self.settings.publish_timeout_seconds,
            headers=headers,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            content_type=message.content_type,
        )
        publishing: Callable[[], Awaitable[None]]
        if step is retry.Step.RETRY_LATER:
            retry_exchange = self._topology.retry
            publishing = functools.partial(publish, retry_exchange, envelope.original_routing_key, **copy)
            outcome = "retry_later"
        else:
            publishing = functools.partial(self._dead_letter, envelope, event, error, site_id, copy)
            outcome = "dead_lettered"
        if await self._publish_or_requeue(message, publishing):
            await _ack(message)
            _log_outcome(envelope, site_id, event, outcome, error, started, attempts=attempts)

    async def _dead_letter(
        self,
        envelope: env.Envelope,
        event: InboundEvent | None,
        error: OrchestratorError,
        site_id: int | None,
        copy: dict[str, Any],
    ) -> None:
        assert self._topology is not None
        if site_id is not None:
            result = failed(
                causation_id=event.event_id if event else error.event_id,
                site_id=site_id,
                version=event.version if event else error.version,
                code=error.code,
                message=error.message,
                retryable=error.retryable,
            )
            await self._publish_result(result, envelope)
        await publish(self._topology.dead_letters, envelope.original_routing_key, **copy)

    async def _publish_result(self, result: ResultEvent, envelope: env.Envelope) -> None:
        assert self._topology is not None
        await publish(
            self._topology.results,
            result.type,
            result.model_dump_json().encode(),
            timeout=self.settings.publish_timeout_seconds,
            message_id=str(result.event_id),
            correlation_id=envelope.correlation_id or envelope.message_id or _str(result.causation_id),
        )

    async def _publish_or_requeue(
        self, message: AbstractIncomingMessage, publishing: Callable[[], Awaitable[None]]
    ) -> bool:
        """Publish, retrying a few times: the swarm work is done, and each requeue counts toward the
        delivery limit. If it still fails, the message goes back to the queue (or, with the
        connection gone, the broker redelivers it) and the caller must not ack."""
        for pause in PUBLISH_RETRY_PAUSES:
            try:
                await publishing()
                return True
            except PublishFailed as exc:
                log.error("could not publish", extra=fields(error=exc.message, retry_in=pause))
                if message.channel.is_closed:
                    return False
                await asyncio.sleep(pause)
        with contextlib.suppress(*PUBLISH_ERRORS):
            await message.nack(requeue=True)
        return False


def to_envelope(message: AbstractIncomingMessage) -> env.Envelope:
    return env.Envelope(
        body=message.body,
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        user_id=message.user_id,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        headers=dict(message.headers or {}),
    )


async def _ack(message: AbstractIncomingMessage) -> None:
    try:
        await message.ack()
    except PUBLISH_ERRORS as exc:
        # The channel died after the confirm: the broker redelivers and the handler is idempotent.
        log.warning("ack failed; the message will be redelivered", extra=fields(error=repr(exc)))


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _log_outcome(
    envelope: env.Envelope,
    site_id: int | None,
    event: InboundEvent | None,
    outcome: str,
    error: OrchestratorError | None,
    started: float,
    attempts: int | None = None,
) -> None:
    values: dict[str, Any] = {
        "event_id": str(event.event_id) if event else envelope.message_id,
        "type": envelope.original_routing_key,
        "site_id": site_id,
        "version": event.version if event else None,
        "outcome": outcome,
        "duration_ms": round((time.monotonic() - started) * 1000),
    }
    if error is not None:
        values |= {"code": error.code, "error": error.message, "attempts": attempts}
    log.log(logging.WARNING if error else logging.INFO, "event handled", extra=fields(**values))
