"""File and log requests (`director.files`) as a request/reply processor (`bus.requests`)."""

from __future__ import annotations

from typing import Any

from orchestrator.bus.decoding import parse_file_request
from orchestrator.bus.outcomes import Requester
from orchestrator.bus.requests import RequestReplies
from orchestrator.errors import FileRefused
from orchestrator.files.service import SiteFiles
from orchestrator_contract.files import FileRequest, FilesRead, FilesWrite, LogsStop

# Operations not worth a log line each (a download or an upload is a stream of them).
_QUIET = (FilesRead,)


class FileRequests(RequestReplies[FileRequest]):
    refusal = FileRefused

    def __init__(self, files: SiteFiles, reply_queue_prefix: str, max_reply_bytes: int) -> None:
        super().__init__(reply_queue_prefix, max_reply_bytes)
        self.files = files

    def decode(self, body: bytes, routing_key: str, contract_version: object) -> FileRequest:
        return parse_file_request(body, routing_key, contract_version)

    async def answer(self, request: FileRequest, requester: Requester) -> bytes | None:
        return await self.files.handle(request, requester)

    def quiet(self, request: FileRequest) -> bool:
        return isinstance(request, _QUIET) or (isinstance(request, FilesWrite) and not request.final)

    def facts(self, request: FileRequest) -> dict[str, Any]:
        facts: dict[str, Any] = {"site_id": request.site_id, "op": request.type}
        if isinstance(request, LogsStop):
            facts["stream_id"] = str(request.stream_id)
        elif path := getattr(request, "path", None):
            facts["path"] = path[:200]
        return facts
