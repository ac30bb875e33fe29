"""Processing of one site event: authenticate, parse, then (one site at a time) dispatch with
in-process retries, and say what came of it as an `Outcome` for the settler."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from orchestrator import retry
from orchestrator.bus import broker
from orchestrator.bus.settlement import Completed, Delivery, Failed, Outcome, Outgoing, Settler
from orchestrator.config import Settings
from orchestrator.contract import decoding as env
from orchestrator.contract.sites import InboundEvent, ResultEvent, failed
from orchestrator.errors import OrchestratorError, PermanentError
from orchestrator.logs import fields
from orchestrator.sites.handlers import Context, dispatch
from orchestrator.sites.locks import SiteLocks

log = logging.getLogger("orchestrator.siteevents")


class SiteEvents:
    def __init__(self, settings: Settings, ctx: Context, settler: Settler, results: AbstractExchange) -> None:
        self.settings = settings
        self.ctx = ctx
        self.settler = settler
        self.results = results
        self._locks = SiteLocks()

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        delivery = Delivery(message, broker.to_envelope(message, self.settings.requeue_exchange))
        envelope = delivery.envelope
        publisher: str | None = None
        try:
            publisher = env.authenticate(
                envelope,
                inbound_exchange=self.settings.inbound_exchange,
                requeue_exchange=self.settings.requeue_exchange,
                allowed=self.settings.allowed_publishers,
            )
            if len(envelope.body) > env.PARSE_ON_LOOP_BYTES:
                # Big bodies parse in a thread: the loop keeps serving other sites meanwhile.
                event = await asyncio.to_thread(env.parse_event, envelope.body, envelope.original_routing_key)
            else:
                event = env.parse_event(envelope.body, envelope.original_routing_key)
        except PermanentError as error:
            # `publisher` stays None when authentication failed: such a letter is never replayed,
            # and a stranger's message gets no result at all.
            async with self._locks.hold(error.site_id):
                await self.settler.settle(delivery, self._failure(delivery, None, error, publisher))
            return
        async with self._locks.hold(event.site.id):
            outcome = await self._dispatch(delivery, event, publisher)
            await self.settler.settle(delivery, outcome)

    async def _dispatch(self, delivery: Delivery, event: InboundEvent, publisher: str) -> Outcome:
        try:
            async for attempt in retry.in_process(self.settings.retry_budget_seconds):
                with attempt:
                    result = await dispatch(event, self.ctx)
        except OrchestratorError as error:
            return self._failure(delivery, event, error, publisher)
        except Exception as exc:  # a bug: keep serving, dead-letter the event with the evidence
            log.exception("unexpected error", extra=fields(event_id=str(event.event_id)))
            return self._failure(delivery, event, OrchestratorError(f"unexpected error: {exc!r}"), publisher)
        return Completed([self._result(result, delivery)], _facts(event), outcome=result.type)

    def _failure(
        self, delivery: Delivery, event: InboundEvent | None, error: OrchestratorError, publisher: str | None
    ) -> Failed:
        site_id = event.site.id if event else error.site_id
        result = None
        if site_id is not None:
            result = self._result(
                failed(
                    causation_id=event.event_id if event else error.event_id,
                    site_id=site_id,
                    version=event.version if event else error.version,
                    code=error.code,
                    message=error.message,
                    retryable=error.retryable,
                    rolled_back=error.rolled_back,
                    applied_version=error.applied_version,
                ),
                delivery,
            )
        facts = _facts(event) if event else {"site_id": site_id, "version": None}
        return Failed(error, result, publisher, facts)

    def _result(self, result: ResultEvent, delivery: Delivery) -> Outgoing:
        envelope = delivery.envelope
        causation = None if result.causation_id is None else str(result.causation_id)
        return Outgoing(
            self.results,
            result.type,
            result.model_dump_json().encode(),
            message_id=str(result.event_id),
            correlation_id=envelope.correlation_id or envelope.message_id or causation,
        )


def _facts(event: InboundEvent) -> dict[str, Any]:
    return {"event_id": str(event.event_id), "site_id": event.site.id, "version": event.version}
