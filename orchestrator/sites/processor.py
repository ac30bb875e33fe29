"""Site events as a queue's processor: parse Director's event, run its handler (with in-process
retries of transient errors), and say what came of it as a result for Director.

The `bus.receiver.Receiver` authenticates, runs one event per site at a time and settles.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from orchestrator import retry
from orchestrator.bus.decoding import parse_event
from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import Completed, Failed, Outcome, Outgoing, Received
from orchestrator.errors import OrchestratorError
from orchestrator.sites.handlers import Context, dispatch
from orchestrator.sites.protocols import HealthPort, NoHealth
from orchestrator_contract import version as contract
from orchestrator_contract.results import SiteResult, failed
from orchestrator_contract.sites import SiteEvent


class SiteEvents:
    def __init__(
        self, ctx: Context, results_exchange: str, retry_budget_seconds: float, health: HealthPort | None = None
    ) -> None:
        self.ctx = ctx
        self.results_exchange = results_exchange
        self.retry_budget_seconds = retry_budget_seconds
        # Told of every site about to be said deployed: from then on, its going down is reported.
        self.health: HealthPort = health or NoHealth()

    def parse(self, envelope: Envelope) -> SiteEvent:
        # A retried event comes back through the requeue exchange under its first routing key.
        return parse_event(envelope.body, envelope.original_routing_key, envelope.headers.get(contract.HEADER))

    def lane(self, message: SiteEvent | None, error: OrchestratorError | None) -> Hashable | None:
        """One event per site at a time (also a refusal, so a site's results keep their order)."""
        return message.site.id if message is not None else error.site_id if error is not None else None

    async def process(self, message: SiteEvent, received: Received) -> Outcome:
        async for attempt in retry.in_process(self.retry_budget_seconds):
            with attempt:
                result = await dispatch(message, self.ctx)
        if result.type == "site.deployed" and result.service is not None and result.service.replicas:
            self.health.watch(result.service.name)
        return Completed([self._result(result, received.envelope)], _facts(message), outcome=result.type)

    def refused(
        self, error: OrchestratorError, envelope: Envelope, publisher: str | None, message: SiteEvent | None
    ) -> Failed:
        site_id = message.site.id if message else error.site_id
        result = None
        # An unauthenticated publisher (publisher None) never makes us speak about a site.
        if site_id is not None and publisher is not None:
            result = self._result(
                failed(
                    causation_id=message.event_id if message else error.event_id,
                    site_id=site_id,
                    version=message.version if message else error.version,
                    code=error.code,
                    message=error.message,
                    retryable=error.retryable,
                    rolled_back=error.rolled_back,
                    applied_version=error.applied_version,
                ),
                envelope,
            )
        facts = _facts(message) if message else {"site_id": site_id, "version": None}
        return Failed(error, result, publisher, facts)

    def _result(self, result: SiteResult, envelope: Envelope) -> Outgoing:
        causation = None if result.causation_id is None else str(result.causation_id)
        return Outgoing(
            self.results_exchange,
            result.type,
            result.model_dump_json().encode(),
            message_id=str(result.event_id),
            correlation_id=envelope.correlation_id or envelope.message_id or causation,
        )


def _facts(event: SiteEvent) -> dict[str, Any]:
    return {"event_id": str(event.event_id), "site_id": event.site.id, "version": event.version}
