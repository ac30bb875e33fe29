"""Database requests (`director.databases`) as a request/reply processor (`bus.requests`)."""

from __future__ import annotations

from typing import Any

from orchestrator.bus.decoding import parse_database_request
from orchestrator.bus.outcomes import Requester
from orchestrator.bus.requests import RequestReplies
from orchestrator.databases.requests import SiteDatabases
from orchestrator.errors import DatabaseRefused
from orchestrator_contract.databases import DatabaseQuery, DatabaseRequest


class DatabaseRequests(RequestReplies[DatabaseRequest]):
    refusal = DatabaseRefused

    def __init__(self, databases: SiteDatabases, reply_queue_prefix: str, max_reply_bytes: int) -> None:
        super().__init__(reply_queue_prefix, max_reply_bytes)
        self.databases = databases

    def decode(self, body: bytes, routing_key: str, contract_version: object) -> DatabaseRequest:
        return parse_database_request(body, routing_key, contract_version)

    async def answer(self, request: DatabaseRequest, requester: Requester) -> bytes | None:
        return await self.databases.handle(request, requester)

    def facts(self, request: DatabaseRequest) -> dict[str, Any]:
        # Never the statement's text (it may hold the site's data) nor anything of a reply.
        facts: dict[str, Any] = {"site_id": request.site_id, "op": request.type}
        if isinstance(request, DatabaseQuery):
            facts["sql_bytes"] = len(request.sql.encode())
        return facts
