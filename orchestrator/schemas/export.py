"""`schemas/`: JSON Schema of every event, generated from the models, with one example each, and
the AsyncAPI document of every channel (`asyncapi.py`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from orchestrator.schemas import asyncapi
from orchestrator.schemas.metrics_examples import metrics_examples
from orchestrator_contract import version as contract
from orchestrator_contract.certificates import (
    CertificateError,
    CertificateErrorCode,
    PendingDomain,
    ServedDomain,
    SiteCertificate,
    SiteTls,
)
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.databases import DatabaseOkReply, DatabaseRequest
from orchestrator_contract.files import (
    ArchiveChunk,
    DeleteResult,
    Entry,
    EntryResult,
    ErrorReply,
    FileRequest,
    FilesArchive,
    FilesChmod,
    FilesDelete,
    FilesList,
    FilesMkdir,
    FilesRead,
    FilesRename,
    FilesStat,
    FilesUsage,
    FilesWrite,
    ListResult,
    LogLine,
    LogsFollow,
    LogsResult,
    LogsStop,
    LogsStopResult,
    LogsTail,
    LogsUpdate,
    OkReply,
    ReadResult,
    ReplyError,
    StatResult,
    UsageResult,
    WriteResult,
)
from orchestrator_contract.metrics import MetricsReply, MetricsRequest, NodeMetrics, OrchestratorMetrics, SiteMetrics
from orchestrator_contract.results import Drift, DriftReport, ErrorInfo, ServiceRef, SiteHealth, SiteResult
from orchestrator_contract.sites import (
    SiteCreated,
    SiteDeleted,
    SiteEvent,
    SiteImageRequested,
    SiteRestartRequested,
    SiteUpdated,
)
from orchestrator_contract.terminals import (
    TerminalClose,
    TerminalCommand,
    TerminalInput,
    TerminalOpen,
    TerminalResize,
    TerminalUpdate,
)

_WHEN = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_SITE = {
    "id": 1,
    "name": "hello",
    "kind": "dynamic",
    "domains": ["hi.example.com"],
    "image": {"name": "director/base:latest", "custom": False},
    "resources": {"cpus": 0.5, "memory": "256Mi"},
    "serving": True,
    "env": {"GREETING": "hello"},
}
_IN = uuid.UUID("00000000-0000-4000-8000-000000000001")
_NOT_POINTED = CertificateError(
    code=CertificateErrorCode.DNS_NOT_POINTED,
    message="www.hello.example.org resolves to 203.0.113.9, not to this cluster (198.51.100.7)",
    retryable=True,
)
_SESSION = uuid.UUID("00000000-0000-4000-8000-000000000003")
_UPLOAD = uuid.UUID("00000000-0000-4000-8000-000000000006")
_STREAM = uuid.UUID("00000000-0000-4000-8000-000000000007")
_ETAG = "9f86d081884c7d659a2feaa0c55ad015"
_INDEX = Entry(name="index.html", path="public/index.html", type="file", size=5, mode=0o660, mtime=_WHEN)
_SERVICE = ServiceRef(name="site_0001", id="x7k2p9q4m1n8b3v6c5z0l2j4h", replicas=1)


def _examples() -> dict[str, BaseModel]:
    common = {"event_id": _IN, "occurred_at": _WHEN, "version": 1}
    result = {
        "event_id": uuid.UUID("00000000-0000-4000-8000-000000000002"),
        "occurred_at": _WHEN,
        "causation_id": _IN,
        "site_id": 1,
        "version": 1,
    }
    return {
        "site.created": SiteCreated.model_validate({**common, "type": "site.created", "site": _SITE}),
        "site.updated": SiteUpdated.model_validate(
            {**common, "version": 2, "type": "site.updated", "site": {**_SITE, "domains": ["hello.example.com"]}}
        ),
        "site.deleted": SiteDeleted.model_validate({**common, "version": 3, "type": "site.deleted", "site": {"id": 1}}),
        "site.restart_requested": SiteRestartRequested.model_validate(
            {**common, "version": 2, "type": "site.restart_requested", "site": {"id": 1}}
        ),
        "site.image_requested": SiteImageRequested.model_validate(
            {
                **common,
                "version": 3,
                "type": "site.image_requested",
                "site": {"id": 1},
                "image": {"parent": "director/base:latest", "packages": ["jq", "sqlite3"]},
            }
        ),
        "site.deployed": SiteResult(
            type="site.deployed",
            applied_version=1,
            service=_SERVICE,
            tls=SiteTls(
                served=[ServedDomain(domain="hi.example.com", not_after=_WHEN.replace(year=2026, month=4))],
                pending=[
                    PendingDomain(
                        domain="www.hello.example.org",
                        status="failed",
                        retry_at=_WHEN.replace(minute=5),
                        error=_NOT_POINTED,
                    )
                ],
            ),
            **result,
        ),
        "site.image_built": SiteResult(
            type="site.image_built",
            image="198.18.213.1:5000/sites/site_0001:3@sha256:" + "5" * 64,
            **{**result, "version": 3},
        ),
        "site.removed": SiteResult(type="site.removed", **result),
        "site.stale": SiteResult(type="site.stale", applied_version=4, service=_SERVICE, **result),
        "site.failed": SiteResult(
            type="site.failed",
            error=ErrorInfo(
                code=ErrorCode.IMAGE_NOT_ALLOWED, message="image 'evil:latest' is not allowed", retryable=False
            ),
            **result,
        ),
        **_report_examples(),
        **_terminal_examples(),
        **_file_examples(),
        **metrics_examples(),
    }


def _report_examples() -> dict[str, BaseModel]:
    return {
        "site.health": SiteHealth(
            event_id=uuid.UUID("00000000-0000-4000-8000-000000000004"),
            occurred_at=_WHEN,
            site_id=1,
            status="down",
            since=_WHEN,
            detail="0 of 1 tasks answering: nothing serves the site",
        ),
        "site.certificate": SiteCertificate(
            event_id=uuid.UUID("00000000-0000-4000-8000-000000000008"),
            occurred_at=_WHEN,
            site_id=1,
            domain="www.hello.example.org",
            status="failed",
            retry_at=_WHEN.replace(minute=5),
            error=_NOT_POINTED,
        ),
        "orchestrator.drift": DriftReport(
            event_id=uuid.UUID("00000000-0000-4000-8000-000000000005"),
            occurred_at=_WHEN,
            drift=[
                Drift(
                    kind="edited",
                    subject="site_0001",
                    site_id=1,
                    detail="the service no longer matches version 1 as applied "
                    "(Docker's previous spec is the applied one)",
                )
            ],
        ),
    }


def _terminal_examples() -> dict[str, BaseModel]:
    return {
        "terminal.open": TerminalOpen(session_id=_SESSION, site_id=1, cols=120, rows=32),
        "terminal.input": TerminalInput(session_id=_SESSION, data="ZWNobyBoaQo="),
        "terminal.resize": TerminalResize(session_id=_SESSION, cols=100, rows=40),
        "terminal.close": TerminalClose(session_id=_SESSION),
        "terminal.opened": TerminalUpdate(session_id=_SESSION, type="opened", seq=0, occurred_at=_WHEN),
        "terminal.output": TerminalUpdate(
            session_id=_SESSION, type="output", seq=1, occurred_at=_WHEN, data="ZWNobyBoaQ0KaGkNCg=="
        ),
        "terminal.closed": TerminalUpdate(
            session_id=_SESSION, type="closed", seq=2, occurred_at=_WHEN, reason="closed by the user"
        ),
        "terminal.failed": TerminalUpdate(
            session_id=_SESSION,
            type="failed",
            seq=0,
            occurred_at=_WHEN,
            reason="no open terminal session 00000000-0000-4000-8000-000000000003",
            code=ErrorCode.UNKNOWN_SESSION,
        ),
    }


def _file_examples() -> dict[str, BaseModel]:
    """A request and the reply of every file operation, and an error reply."""
    docs = Entry(name="docs", path="public/docs", type="dir", size=4096, mode=0o770, mtime=_WHEN)
    link = Entry(name="latest", path="public/latest", type="symlink", size=4, mode=0o777, mtime=_WHEN, target="docs")
    line = LogLine(ts=_WHEN, task="x7k2p9q4m1n8b3v6c5z0l2j4h", text="listening on :80, DB_PASSWORD=***")
    return {
        "files.list": FilesList(site_id=1, path="public", limit=2),
        "files.list.reply": OkReply(result=ListResult(entries=[docs, _INDEX], next_cursor="n1.aW5kZXguaHRtbA")),
        "files.stat": FilesStat(site_id=1, path="public/latest"),
        "files.stat.reply": OkReply(result=StatResult(entry=link)),
        "files.read": FilesRead(site_id=1, path="public/index.html", offset=0, length=1048576),
        "files.read.reply": OkReply(result=ReadResult(data="aGVsbG8=", offset=0, size=5, eof=True, etag=_ETAG)),
        "files.write": FilesWrite(
            site_id=1,
            path="public/index.html",
            upload_id=_UPLOAD,
            offset=0,
            data="aGVsbG8=",
            final=True,
            if_match=_ETAG,
        ),
        "files.write.reply": OkReply(result=WriteResult(received=5, entry=_INDEX, etag=_ETAG)),
        "files.mkdir": FilesMkdir(site_id=1, path="public/docs", parents=True),
        "files.mkdir.reply": OkReply(result=EntryResult(entry=docs)),
        "files.rename": FilesRename(site_id=1, path="public/draft.html", to="public/index.html", overwrite=True),
        "files.rename.reply": OkReply(result=EntryResult(entry=_INDEX)),
        "files.delete": FilesDelete(site_id=1, path="public/docs", recursive=True),
        "files.delete.reply": OkReply(result=DeleteResult(deleted=12)),
        "files.chmod": FilesChmod(site_id=1, path="public/index.html", mode=0o640),
        "files.chmod.reply": OkReply(result=EntryResult(entry=_INDEX.model_copy(update={"mode": 0o640}))),
        "files.usage": FilesUsage(site_id=1),
        "files.usage.reply": OkReply(result=UsageResult(bytes=183042, files=37, dirs=6)),
        "files.archive": FilesArchive(site_id=1, path="public"),
        "files.archive.reply": OkReply(
            result=ArchiveChunk(
                seq=0,
                data="UEsDBBQACAAIAA==",
                last=True,
                size=1843,
                sha256="2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            )
        ),
        "logs.tail": LogsTail(site_id=1, lines=100),
        "logs.tail.reply": OkReply(result=LogsResult(lines=[line])),
        "logs.follow": LogsFollow(site_id=1, stream_id=_STREAM, lines=10),
        "logs.follow.reply": OkReply(result=LogsUpdate(stream_id=_STREAM, seq=3, lines=[line])),
        "logs.stop": LogsStop(site_id=1, stream_id=_STREAM),
        "logs.stop.reply": OkReply(result=LogsStopResult(stream_id=_STREAM, stopped=True)),
        "files.error": ErrorReply(
            error=ReplyError(code=ErrorCode.NOT_FOUND, message="public/missing.html does not exist")
        ),
    }


def documents() -> dict[str, Any]:
    """File name -> JSON document, exactly as committed under schemas/."""
    schemas = {
        "inbound-event.schema.json": TypeAdapter(SiteEvent).json_schema(),
        "result-event.schema.json": SiteResult.model_json_schema(),
        "site-health.schema.json": SiteHealth.model_json_schema(),
        "site-certificate.schema.json": SiteCertificate.model_json_schema(),
        "drift-report.schema.json": DriftReport.model_json_schema(),
        "terminal-command.schema.json": TypeAdapter(TerminalCommand).json_schema(),
        "terminal-event.schema.json": TerminalUpdate.model_json_schema(),
        "file-request.schema.json": TypeAdapter(FileRequest).json_schema(),
        "file-reply.schema.json": TypeAdapter(OkReply | ErrorReply).json_schema(),
        "site-metrics.schema.json": SiteMetrics.model_json_schema(),
        "node-metrics.schema.json": NodeMetrics.model_json_schema(),
        "orchestrator-metrics.schema.json": OrchestratorMetrics.model_json_schema(),
        "metrics-request.schema.json": TypeAdapter(MetricsRequest).json_schema(),
        "metrics-reply.schema.json": TypeAdapter(MetricsReply | ErrorReply).json_schema(),
        "database-request.schema.json": TypeAdapter(DatabaseRequest).json_schema(),
        "database-reply.schema.json": TypeAdapter(DatabaseOkReply | ErrorReply).json_schema(),
    }
    # Each schema names the contract version it describes (the messages carry it as a header).
    docs: dict[str, Any] = {
        name: {**schema, "x-contract-version": contract.VERSION} for name, schema in schemas.items()
    }
    examples = {name: json.loads(example.model_dump_json()) for name, example in _examples().items()}
    for name, example in examples.items():
        docs[f"examples/{name}.json"] = example
    docs["asyncapi.json"] = asyncapi.document(examples)
    return docs


def render(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def export(directory: Path) -> list[Path]:
    written = []
    for name, document in documents().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document))
        written.append(path)
    return written
