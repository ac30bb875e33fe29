"""File and log requests as a queue's processor: every request from Director gets its reply, on
success or failure, at the request's `reply_to` with its `correlation_id`.

The `bus.receiver.Receiver` authenticates (a stranger's request gets no reply, only a dead letter),
parses and settles. A request without a usable `reply_to` (missing, or not a reply queue: the
orchestrator answers only into reply queues) is dead-lettered; so is a malformed one, which is
also answered when it can be. Every other refusal (`not_found`, `busy`, ...) is only answered.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from orchestrator.bus.decoding import parse_file_request
from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import DEFAULT_EXCHANGE, Completed, Failed, Outcome, Outgoing, Received
from orchestrator.bus.replies import error_reply, reply_queue_allowed, within_limit
from orchestrator.errors import FileRefused, InvalidRequest, OrchestratorError
from orchestrator.files.service import SiteFiles
from orchestrator.files.streams import Requester
from orchestrator_contract import version as contract
from orchestrator_contract.files import FileRequest, FilesRead, FilesWrite, LogsStop

# Operations not worth a log line each (a download or an upload is a stream of them).
_QUIET = (FilesRead,)


class FileRequests:
    def __init__(self, files: SiteFiles, reply_queue_prefix: str, max_reply_bytes: int) -> None:
        self.files = files
        self.reply_queue_prefix = reply_queue_prefix
        self.max_reply_bytes = max_reply_bytes

    def parse(self, envelope: Envelope) -> FileRequest:
        if not reply_queue_allowed(envelope.reply_to, self.reply_queue_prefix):
            raise InvalidRequest(
                f"reply_to {str(envelope.reply_to)[:100]!r} is not a reply queue (amq.rabbitmq.reply-to, or "
                f"{self.reply_queue_prefix}<name>): nobody can be answered"
            )
        if not envelope.correlation_id:
            raise InvalidRequest("the request has no correlation_id")
        return parse_file_request(envelope.body, envelope.routing_key, envelope.headers.get(contract.HEADER))

    def lane(self, message: FileRequest | None, error: OrchestratorError | None) -> Hashable | None:
        # No lane: requests of a site run side by side (bounded per site); an upload's chunks
        # keep their order by offset (see files.uploads).
        return None

    async def process(self, message: FileRequest, received: Received) -> Outcome:
        envelope = received.envelope
        requester = Requester(str(envelope.reply_to), str(envelope.correlation_id))
        body = await self.files.handle(message, requester)
        outgoing = [] if body is None else [self._reply(requester, within_limit(body, self.max_reply_bytes))]
        quiet = isinstance(message, _QUIET) or (isinstance(message, FilesWrite) and not message.final)
        return Completed(outgoing, _facts(message), outcome=message.type, quiet=quiet)

    def refused(
        self, error: OrchestratorError, envelope: Envelope, publisher: str | None, message: FileRequest | None
    ) -> Failed:
        if message is not None and not isinstance(error, FileRefused):
            # Docker down, a bug: answered now, never replayed (the requester stopped waiting).
            error = FileRefused(error.message, code=error.code)
        result = None
        # A stranger (publisher None) hears nothing; nor does a request nobody can be answered at.
        if publisher is not None and reply_queue_allowed(envelope.reply_to, self.reply_queue_prefix):
            requester = Requester(str(envelope.reply_to), envelope.correlation_id or "")
            result = self._reply(requester, error_reply(error.code, error.message))
        if isinstance(error, InvalidRequest) or message is None:
            facts: dict[str, Any] = {"reply_to": str(envelope.reply_to)[:100]}
        else:
            facts = _facts(message)
        return Failed(error, result, publisher, facts)

    @staticmethod
    def _reply(requester: Requester, body: bytes) -> Outgoing:
        # Not persistent and not mandatory: a reply nobody waits for any more is dropped, never
        # retried (RabbitMQ 3.x also returns every mandatory reply to direct reply-to). Not
        # confirmed either: the requester asks again after a lost one, and a confirm round trip
        # would be most of a small read's time.
        return Outgoing(
            DEFAULT_EXCHANGE,
            requester.reply_to,
            body,
            correlation_id=requester.correlation_id or None,
            persistent=False,
            mandatory=False,
            confirmed=False,
        )


def _facts(request: FileRequest) -> dict[str, Any]:
    facts: dict[str, Any] = {"site_id": request.site_id, "op": request.type}
    if isinstance(request, LogsStop):
        facts["stream_id"] = str(request.stream_id)
    elif path := getattr(request, "path", None):
        facts["path"] = path[:200]
    return facts
