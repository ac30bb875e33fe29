"""The metrics queues' processors: Director's requests for the current values (`metrics.*` on
`director.files`, answered at `reply_to` like file requests), and the collectors' samples.

A request is answered from the reporter's memory (the latest window), never with a Docker call or
a cgroup read: a page of a thousand sites costs what serialising it costs.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pydantic import ValidationError

from orchestrator.bus import decoding
from orchestrator.bus.decoding import describe
from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import DEFAULT_EXCHANGE, Completed, Failed, Outcome, Outgoing, Received
from orchestrator.bus.replies import error_reply, reply_queue_allowed
from orchestrator.bus.requests import require_answerable
from orchestrator.errors import FileRefused, InvalidRequest, OrchestratorError
from orchestrator.metrics.reporter import MetricsReporter
from orchestrator.metrics.samples import MAX_SAMPLE_BYTES, NodeSample
from orchestrator_contract import version as contract
from orchestrator_contract.metrics import (
    METRICS_REQUESTS,
    MetricsNodes,
    MetricsReply,
    MetricsRequest,
    MetricsResult,
    MetricsSite,
    MetricsSites,
    NodesResult,
    SiteMetricsResult,
    SitesPage,
)

MAX_REQUEST_BODY = 4096


def parse_request(body: bytes, routing_key: str, contract_version: object = None) -> MetricsRequest:
    """Bytes to a typed metrics request, or InvalidRequest (another major version of the contract
    too: `contract_version` is the message's `contract-version` header)."""
    return decoding.parse_request(
        body, routing_key, contract_version, what="metrics request", limit=MAX_REQUEST_BODY, models=METRICS_REQUESTS
    )


def parse_sample(body: bytes) -> NodeSample:
    if len(body) > MAX_SAMPLE_BYTES:
        raise InvalidRequest(f"metrics sample is larger than {MAX_SAMPLE_BYTES} bytes")
    try:
        return NodeSample.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(f"metrics sample does not match its schema: {describe(exc)}") from None
    except ValueError as exc:
        raise InvalidRequest(f"metrics sample does not match its schema: {exc!s:.200}") from None


class MetricsRequests:
    def __init__(self, reporter: MetricsReporter, reply_queue_prefix: str) -> None:
        self.reporter = reporter
        self.reply_queue_prefix = reply_queue_prefix

    def parse(self, envelope: Envelope) -> MetricsRequest:
        require_answerable(envelope, self.reply_queue_prefix)
        return parse_request(envelope.body, envelope.routing_key, envelope.headers.get(contract.HEADER))

    def lane(self, message: MetricsRequest | None, error: OrchestratorError | None) -> Hashable | None:
        return None

    async def process(self, message: MetricsRequest, received: Received) -> Outcome:
        result: MetricsResult
        match message:
            case MetricsSite(site_id=site_id):
                result = SiteMetricsResult(site_id=site_id, metrics=self.reporter.site(site_id))
            case MetricsSites(after=after, limit=limit):
                sites, next_after = self.reporter.page(after, limit)
                result = SitesPage(sites=sites, next_after=next_after)
            case MetricsNodes():
                result = NodesResult(nodes=self.reporter.nodes())
        body = MetricsReply(result=result).model_dump_json().encode()
        envelope = received.envelope
        return Completed([_reply(str(envelope.reply_to), envelope.correlation_id, body)], _facts(message), message.type)

    def refused(
        self, error: OrchestratorError, envelope: Envelope, publisher: str | None, message: MetricsRequest | None
    ) -> Failed:
        if message is not None and not isinstance(error, FileRefused):
            error = FileRefused(error.message, code=error.code)
        result = None
        if publisher is not None and reply_queue_allowed(envelope.reply_to, self.reply_queue_prefix):
            result = _reply(str(envelope.reply_to), envelope.correlation_id, error_reply(error.code, error.message))
        facts = _facts(message) if message is not None else {"reply_to": str(envelope.reply_to)[:100]}
        return Failed(error, result, publisher, facts)


def _reply(reply_to: str, correlation_id: str | None, body: bytes) -> Outgoing:
    # As a file request's reply: not persistent, not mandatory, not confirmed (the requester asks
    # again after a lost one).
    return Outgoing(
        DEFAULT_EXCHANGE,
        reply_to,
        body,
        correlation_id=correlation_id or None,
        persistent=False,
        mandatory=False,
        confirmed=False,
    )


def _facts(request: MetricsRequest | None) -> dict[str, Any]:
    facts: dict[str, Any] = {"op": request.type if request else None}
    if isinstance(request, MetricsSite):
        facts["site_id"] = request.site_id
    return facts


class CollectorSamples:
    """Samples from the nodes' collectors, kept by the reporter for their window's merge."""

    def __init__(self, reporter: MetricsReporter) -> None:
        self.reporter = reporter

    def parse(self, envelope: Envelope) -> NodeSample:
        return parse_sample(envelope.body)

    def lane(self, message: NodeSample | None, error: OrchestratorError | None) -> Hashable | None:
        return None

    async def process(self, message: NodeSample, received: Received) -> Outcome:
        kept = self.reporter.on_sample(message)
        facts = {"node": message.hostname, "end": message.end.isoformat(), "sites": len(message.sites)}
        # Quiet: a node's sample every period is no news; a late one is said in the outcome.
        return Completed((), facts, "kept" if kept else "late", quiet=kept)

    def refused(
        self, error: OrchestratorError, envelope: Envelope, publisher: str | None, message: NodeSample | None
    ) -> Failed:
        return Failed(error, None, publisher, {"node": message.hostname if message else None})
