"""The one way a delivery is handled, for every queue: receive → authenticate → parse → process →
settle.

A queue's `Processor` says what its messages are and what to do with them, in typed terms; the
`Receiver` does the rest, the same way for site events, terminal commands and file requests:
it reads the delivery once, checks who published it (`envelope.authenticate`), parses it (large
bodies off the event loop), runs the processor (one message per site at a time where the
processor asks for it), turns any error into the processor's typed refusal, and hands the outcome
to the settler. A stranger's message never reaches a processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from aio_pika.abc import AbstractIncomingMessage

from orchestrator.bus import broker
from orchestrator.bus.envelope import Envelope, authenticate
from orchestrator.bus.outcomes import Failed, Outcome, Received
from orchestrator.bus.settlement import Delivery, Settler
from orchestrator.errors import OrchestratorError, PermanentError
from orchestrator.logging_setup import fields

log = logging.getLogger("orchestrator.receiver")
M = TypeVar("M")
# Typical messages are a few KiB; larger ones are parsed in a thread, so the loop keeps serving.
PARSE_ON_LOOP_BYTES = 64 * 1024


@dataclass(frozen=True)
class Trust:
    """Whose messages a queue takes: those published to `exchange` by one of `allowed` (the broker
    checks `user_id`), or coming back through our own `requeue_exchange`."""

    exchange: str
    allowed: Sequence[str]
    requeue_exchange: str | None = None


class Processor(Protocol[M]):
    """What one queue does with its messages, in typed terms (no broker objects)."""

    def parse(self, envelope: Envelope) -> M:
        """Bytes to a typed message, or a PermanentError saying why."""

    def lane(self, message: M | None, error: OrchestratorError | None) -> Hashable | None:
        """Messages of one lane (e.g. one site) are processed one at a time; None: no lane."""

    async def process(self, message: M, received: Received) -> Outcome: ...

    def refused(self, error: OrchestratorError, envelope: Envelope, publisher: str | None, message: M | None) -> Failed:
        """The outcome of a message that failed authentication (`publisher` None), parsing
        (`message` None) or processing."""


class Receiver(Generic[M]):
    def __init__(self, processor: Processor[M], settler: Settler, trust: Trust) -> None:
        self.processor = processor
        self.settler = settler
        self.trust = trust
        self._lanes = Lanes()

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        delivery = Delivery(message, broker.to_envelope(message, self.trust.requeue_exchange))
        envelope = delivery.envelope
        publisher: str | None = None
        try:
            publisher = authenticate(envelope, self.trust.exchange, self.trust.requeue_exchange, self.trust.allowed)
            parsed = await self._parse(envelope)
        except PermanentError as error:
            # `publisher` stays None when authentication failed: such a letter is never replayed,
            # and a stranger's message gets no answer at all.
            async with self._lanes.hold(self.processor.lane(None, error)):
                await self.settler.settle(delivery, self.processor.refused(error, envelope, publisher, None))
            return
        async with self._lanes.hold(self.processor.lane(parsed, None)):
            outcome = await self._process(parsed, Received(envelope, publisher))
            await self.settler.settle(delivery, outcome)

    async def _parse(self, envelope: Envelope) -> M:
        if len(envelope.body) > PARSE_ON_LOOP_BYTES:
            return await asyncio.to_thread(self.processor.parse, envelope)
        return self.processor.parse(envelope)

    async def _process(self, message: M, received: Received) -> Outcome:
        try:
            return await self.processor.process(message, received)
        except OrchestratorError as error:
            return self.processor.refused(error, received.envelope, received.publisher, message)
        except Exception as exc:  # a bug: keep serving, settle the message with the evidence
            log.exception("unexpected error", extra=fields(message_id=received.envelope.message_id))
            unexpected = OrchestratorError(f"unexpected error: {exc!r}")
            return self.processor.refused(unexpected, received.envelope, received.publisher, message)


class Lanes:
    """One asyncio lock per lane key, dropped when nobody holds or waits for it (so the map is
    bounded by the messages in flight, not by every key ever seen)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable | None) -> AsyncIterator[None]:
        if key is None:
            yield
            return
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
