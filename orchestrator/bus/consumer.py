"""Consuming one queue: hand each delivery to its receiver, count what is in flight, stop cleanly.

The receiver settles every delivery it is given (see `receiver` and `settlement`); a bug that
escapes it still never leaves a message hanging: it is rejected and the broker dead-letters it
with `x-death`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from orchestrator.bus import broker
from orchestrator.logging_setup import fields

log = logging.getLogger("orchestrator.consumer")

# A queue's `receiver.Receiver`: takes one delivery and settles it.
OnDelivery = Callable[[AbstractIncomingMessage], Awaitable[None]]


class QueueConsumer:
    def __init__(self, queue: AbstractQueue, receive: OnDelivery) -> None:
        self.queue = queue
        self._receive = receive
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._started = False
        # Set once this process is the queue's single active consumer: nobody else consumed it
        # when we declared it, or a delivery reached us (the broker only delivers to the active one).
        self.active = asyncio.Event()
        self.refresh_active()

    @property
    def inflight(self) -> int:
        return self._inflight

    def refresh_active(self, *_: object) -> None:
        """At start, and after a reconnect (a connection callback): the queue was declared before
        our consumer (came back), so its consumer count is everyone else's. Active only if that is
        nobody; otherwise a delivery will tell (another replica may have taken over)."""
        declared = getattr(self.queue, "declaration_result", None)
        if declared is not None and declared.consumer_count == 0:
            self.active.set()
        else:
            self.active.clear()

    @property
    def consuming(self) -> bool:
        """Registered and taking deliveries on an open channel."""
        return self._started and not self._stopping and not self.queue.channel.is_closed

    async def start(self) -> None:
        await self.queue.consume(self._on_message)
        self._started = True

    def stop_taking(self) -> None:
        """Take no new deliveries. The consumer stays registered until the connection closes:
        cancelling it would hand the queue to a standby replica while our in-flight work runs on.
        Deliveries from now on are left unacked and go back to the queue on close."""
        self._stopping = True

    async def drain(self, grace: float) -> bool:
        """Wait for in-flight deliveries; False when the grace period ran out first."""
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            return
        self.active.set()
        self._inflight += 1
        self._idle.clear()
        try:
            await self._receive(message)
        except Exception:
            log.exception("message could not be settled; rejecting it", extra=fields(queue=self.queue.name))
            with contextlib.suppress(*broker.PUBLISH_ERRORS):
                await message.nack(requeue=False)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()
