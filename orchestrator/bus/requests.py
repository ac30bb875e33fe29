"""Request/reply queues as a processor (`director.files`, `director.databases`): every request
from Director gets its reply, on success or failure, at the request's `reply_to` with its
`correlation_id`.

The `bus.receiver.Receiver` authenticates (a stranger's request gets no reply, only a dead letter),
parses and settles. A request without a usable `reply_to` (missing, or not a reply queue: the
orchestrator answers only into reply queues) is dead-lettered; so is a malformed one, which is
also answered when it can be. Every other refusal (`not_found`, `busy`, ...) is only answered.
A queue's own processor says how its requests are decoded, carried out and logged.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import DEFAULT_EXCHANGE, Completed, Failed, Outcome, Outgoing, Received, Requester
from orchestrator.bus.replies import error_reply, reply_queue_allowed, within_limit
from orchestrator.errors import InvalidRequest, OrchestratorError
from orchestrator_contract import version as contract

R = TypeVar("R")


class RequestReplies(Generic[R]):
    # The error a failure is answered as (never replayed: the requester stopped waiting).
    refusal: type[OrchestratorError] = OrchestratorError

    def __init__(self, reply_queue_prefix: str, max_reply_bytes: int) -> None:
        self.reply_queue_prefix = reply_queue_prefix
        self.max_reply_bytes = max_reply_bytes

    # --- what each queue says ----------------------------------------------------------------

    def decode(self, body: bytes, routing_key: str, contract_version: object) -> R:
        """The request, or InvalidRequest; `contract_version`: its `contract-version` header."""
        raise NotImplementedError

    async def answer(self, request: R, requester: Requester) -> bytes | None:
        """The reply's body; None when a stream of replies answers instead."""
        raise NotImplementedError

    def facts(self, request: R) -> dict[str, Any]:
        raise NotImplementedError

    def operation(self, request: R) -> str:
        return str(getattr(request, "type", "request"))

    def quiet(self, request: R) -> bool:
        return False

    # --- the processor ---------------------------------------------------------------------------

    def parse(self, envelope: Envelope) -> R:
        require_answerable(envelope, self.reply_queue_prefix)
        return self.decode(envelope.body, envelope.routing_key, envelope.headers.get(contract.HEADER))

    def lane(self, message: R | None, error: OrchestratorError | None) -> Hashable | None:
        # No lane: requests of a site run side by side (each queue bounds them per site).
        return None

    async def process(self, message: R, received: Received) -> Outcome:
        envelope = received.envelope
        requester = Requester(str(envelope.reply_to), str(envelope.correlation_id))
        body = await self.answer(message, requester)
        outgoing = [] if body is None else [reply(requester, within_limit(body, self.max_reply_bytes))]
        return Completed(outgoing, self.facts(message), outcome=self.operation(message), quiet=self.quiet(message))

    def refused(self, error: OrchestratorError, envelope: Envelope, publisher: str | None, message: R | None) -> Failed:
        if message is not None and not isinstance(error, self.refusal):
            # Docker down, a bug: answered now, never replayed (the requester stopped waiting).
            error = self.refusal(error.message, code=error.code)
        result = None
        # A stranger (publisher None) hears nothing; nor does a request nobody can be answered at.
        if publisher is not None and reply_queue_allowed(envelope.reply_to, self.reply_queue_prefix):
            requester = Requester(str(envelope.reply_to), envelope.correlation_id or "")
            result = reply(requester, error_reply(error.code, error.message))
        if isinstance(error, InvalidRequest) or message is None:
            facts: dict[str, Any] = {"reply_to": str(envelope.reply_to)[:100]}
        else:
            facts = self.facts(message)
        return Failed(error, result, publisher, facts)


def reply(requester: Requester, body: bytes) -> Outgoing:
    # Not persistent and not mandatory: a reply nobody waits for any more is dropped, never
    # retried (RabbitMQ 3.x also returns every mandatory reply to direct reply-to). Not confirmed
    # either: the requester asks again after a lost one, and a confirm round trip would be most of
    # a small read's time.
    return Outgoing(
        DEFAULT_EXCHANGE,
        requester.reply_to,
        body,
        correlation_id=requester.correlation_id or None,
        persistent=False,
        mandatory=False,
        confirmed=False,
    )


def require_answerable(envelope: Envelope, reply_queue_prefix: str) -> None:
    """InvalidRequest unless the request names a reply queue it may be answered on and a
    correlation id to answer it with."""
    if not reply_queue_allowed(envelope.reply_to, reply_queue_prefix):
        raise InvalidRequest(
            f"reply_to {str(envelope.reply_to)[:100]!r} is not a reply queue (amq.rabbitmq.reply-to, or "
            f"{reply_queue_prefix}<name>): nobody can be answered"
        )
    if not envelope.correlation_id:
        raise InvalidRequest("the request has no correlation_id")
