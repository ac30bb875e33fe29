"""Settlement of one delivery, the same for every queue, in one place.

A processor turns a delivery into an `Outcome`; `Settler.settle` carries it out:

- `Completed`: publish what it produced (results, terminal output) with confirms, then ack;
- `Failed`: a transient error with deliveries left goes to the delayed-retry queue; anything else
  gets its `failed` result (when somebody may be told) and, unless the error says there is nothing
  for an operator to replay (`dead_letter`), a dead-letter copy carrying the reason in our
  headers; then ack.

Nothing is acked before the broker has confirmed what replaces it, so a crash at any point
duplicates at worst and never loses. A copy that cannot be published is retried a few times, then
the message goes back to its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, assert_never

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

from orchestrator import retry
from orchestrator.bus import broker
from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import DEFAULT_EXCHANGE, Completed, Failed, Outcome, Outgoing
from orchestrator.errors import OrchestratorError, PublishFailed
from orchestrator.logging_setup import fields
from orchestrator_contract import headers as hdr

log = logging.getLogger("orchestrator.settlement")
# What a dead-letter copy keeps of a body larger than its queue's contract admits.
TRUNCATED_HEAD_BYTES = 4096
# Pauses between attempts to publish a result or a copy before giving the message back.
PUBLISH_RETRY_PAUSES = (1.0, 3.0, 9.0)


@dataclass(frozen=True)
class Delivery:
    """One message as received, read once into an envelope."""

    message: AbstractIncomingMessage
    envelope: Envelope
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class QueuePolicy:
    """How failures of one queue's messages are settled."""

    inbound_exchange: str
    # Deliveries before a transient failure is dead-lettered (1: never retried later).
    max_attempts: int
    retry: AbstractExchange | None
    dead_letters: AbstractExchange
    # The largest body this queue's contract admits: a dead-letter copy of a larger one keeps only
    # its head, its size and its sha256 (nobody can replay it, and a flood of them stays small).
    max_body: int


# Told of every settled delivery: (exchange, routing key, outcome, seconds since it was received).
Observer = Callable[[str, str, str, float], None]


class Settler:
    def __init__(
        self,
        channel: AbstractChannel,
        policy: QueuePolicy,
        publish_timeout: float,
        unconfirmed: AbstractChannel | None = None,
        observe: Observer | None = None,
    ) -> None:
        """`unconfirmed`: a channel without publisher confirms, for `Outgoing(confirmed=False)`;
        `observe`: counts what was settled (the orchestrator's own figures)."""
        self.channel = channel
        self.policy = policy
        self.timeout = publish_timeout
        self.unconfirmed = unconfirmed
        self.observe = observe
        self._exchanges: dict[str, AbstractExchange] = {}

    async def settle(self, delivery: Delivery, outcome: Outcome) -> None:
        messages: list[Outgoing | _Copy]
        match outcome:
            case Completed(outgoing=outgoing):
                messages, name, extra = list(outgoing), outcome.outcome, {}
            case Failed(error=error, result=result):
                attempts = delivery.envelope.attempts + 1
                headers = self._failure_headers(delivery.envelope, error, attempts, outcome.publisher)
                path = retry.after_failure(error, attempts, self.policy.max_attempts)
                if path is retry.Next.RETRY_LATER and self.policy.retry is not None:
                    messages, name = [_Copy(self.policy.retry, delivery, headers)], "retry_later"
                elif not error.dead_letter:
                    messages, name = [result] if result else [], "failed"
                else:
                    dead = _Copy(self.policy.dead_letters, delivery, headers, keep=self.policy.max_body)
                    messages, name = [result, dead] if result else [dead], "dead_lettered"
                extra = {"code": error.code, "error": error.message, "attempts": attempts}
            case _:
                assert_never(outcome)
        if await self._publish_or_requeue(delivery.message, functools.partial(self._publish_all, messages)):
            await broker.ack(delivery.message)
            if not (isinstance(outcome, Completed) and outcome.quiet):
                _log(delivery, outcome.facts, name, extra)
            if self.observe is not None:
                elapsed = time.monotonic() - delivery.started
                self.observe(self.policy.inbound_exchange, delivery.envelope.original_routing_key, name, elapsed)

    def _failure_headers(
        self, envelope: Envelope, error: OrchestratorError, attempts: int, publisher: str | None
    ) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        headers = {
            # A PUBLISHER header we did not write is a forgery: only an authenticated one is kept.
            **{k: v for k, v in envelope.headers.items() if k not in (*hdr.BROKER_DEATH, hdr.PUBLISHER)},
            hdr.ATTEMPTS: attempts,
            hdr.ROUTING_KEY: envelope.original_routing_key,
            hdr.EXCHANGE: envelope.headers.get(hdr.EXCHANGE) or envelope.exchange or self.policy.inbound_exchange,
            hdr.ERROR_CODE: error.code,
            hdr.ERROR_MESSAGE: error.message[:1000],
            hdr.FIRST_FAILURE: envelope.headers.get(hdr.FIRST_FAILURE) or now,
            hdr.LAST_FAILURE: now,
        }
        if publisher:
            headers[hdr.PUBLISHER] = publisher
        return headers

    async def _publish_all(self, messages: Sequence[Outgoing | _Copy]) -> None:
        for message in messages:
            if isinstance(message, _Copy):
                envelope = message.delivery.envelope
                body, headers = message.body_and_headers()
                await broker.publish(
                    message.exchange,
                    envelope.original_routing_key,
                    body,
                    timeout=self.timeout,
                    headers=headers,
                    message_id=envelope.message_id,
                    correlation_id=envelope.correlation_id,
                    content_type=message.delivery.message.content_type,
                )
            elif not message.confirmed and self.unconfirmed is not None:
                if message.exchange != DEFAULT_EXCHANGE:
                    raise ValueError("unconfirmed messages go to the default exchange only (replies)")
                await broker.publish(
                    self.unconfirmed.default_exchange,
                    message.routing_key,
                    message.body,
                    timeout=self.timeout,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    persistent=message.persistent,
                    mandatory=message.mandatory,
                )
            else:
                await broker.publish(
                    await self._exchange(message.exchange),
                    message.routing_key,
                    message.body,
                    timeout=self.timeout,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    persistent=message.persistent,
                    mandatory=message.mandatory,
                )

    async def _exchange(self, name: str) -> AbstractExchange:
        if name == DEFAULT_EXCHANGE:
            return self.channel.default_exchange
        if (exchange := self._exchanges.get(name)) is None:
            # Declared by the topology already: a handle, no round trip. Our own exchanges only,
            # so the map stays as small as the topology.
            exchange = self._exchanges[name] = await self.channel.get_exchange(name, ensure=False)
        return exchange

    async def _publish_or_requeue(
        self, message: AbstractIncomingMessage, publishing: Callable[[], Awaitable[None]]
    ) -> bool:
        """Publish, retrying a few times: the work is done, and each requeue counts toward the
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
        with contextlib.suppress(*broker.PUBLISH_ERRORS):
            await message.nack(requeue=True)
        return False


@dataclass(frozen=True)
class _Copy:
    """The delivery's own body re-published (delayed retry, dead letter) with our headers."""

    exchange: AbstractExchange
    delivery: Delivery
    headers: dict[str, Any]
    keep: int | None = None  # a body larger than this is cut to its head

    def body_and_headers(self) -> tuple[bytes, dict[str, Any]]:
        body = self.delivery.envelope.body
        if self.keep is None or len(body) <= self.keep:
            return body, self.headers
        digest = hashlib.sha256(body).hexdigest()
        cut = {hdr.TRUNCATED: len(body), hdr.BODY_SHA256: digest}
        return body[:TRUNCATED_HEAD_BYTES], {**self.headers, **cut}


def _log(delivery: Delivery, facts: Mapping[str, Any], outcome: str, extra: Mapping[str, Any]) -> None:
    envelope = delivery.envelope
    values: dict[str, Any] = {
        "event_id": envelope.message_id,
        "type": envelope.original_routing_key,
        **facts,
        "outcome": outcome,
        "duration_ms": round((time.monotonic() - delivery.started) * 1000),
        **extra,
    }
    log.log(logging.WARNING if extra else logging.INFO, "event handled", extra=fields(**values))
