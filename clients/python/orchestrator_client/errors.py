"""Typed errors: one exception class per error code of the contract, all under `OrchestratorError`.

Every refusal the orchestrator reports carries a machine-readable code (a file request's error
reply, a terminal's `failed` update, a `site.failed` result's `error`): `error_for(code, message)`
makes the matching exception, so a caller writes ``except SiteNotFound:`` or reads `err.code`.
A code this client does not know (added by a newer orchestrator within the same major version)
becomes a plain `OrchestratorError` carrying it.

Errors of the client's own making (the broker refused or returned a publish, the broker is
unreachable, the other side speaks another major version of the contract) are `ClientError`s;
no reply in time is the built-in `TimeoutError`.
"""

from __future__ import annotations

from orchestrator_contract.codes import ErrorCode

__all__ = [
    "AccessRefused",
    "BrokerSetup",
    "BrokerUnavailable",
    "Busy",
    "ClientError",
    "ContractMismatch",
    "ConvergeTimeout",
    "DatabaseError",
    "DatabaseKindChange",
    "DatabaseNotOffered",
    "DatabaseUnavailable",
    "DiskQuotaExceeded",
    "DockerConflict",
    "DockerError",
    "DockerRejected",
    "DockerUnavailable",
    "DomainConflict",
    "DomainNotAllowed",
    "Exists",
    "ImageBuildFailed",
    "ImageNotAllowed",
    "ImageNotFound",
    "InternalError",
    "InvalidEvent",
    "InvalidRequest",
    "IoError",
    "IsADirectory",
    "MultipleStatements",
    "NoDatabase",
    "NoRunScript",
    "NotADirectory",
    "NotEmpty",
    "NotFound",
    "NotListening",
    "NotRegular",
    "NotRouted",
    "OrchestratorError",
    "PermanentError",
    "PreconditionFailed",
    "PublishFailed",
    "PublishRefused",
    "QueryDisabled",
    "QueryFailed",
    "QueryTimeout",
    "RunScriptFailed",
    "ServiceFailed",
    "SiteNotFound",
    "StreamOverflow",
    "TerminalBusy",
    "TerminalLimit",
    "TooLarge",
    "TransientError",
    "Unauthenticated",
    "UnknownSession",
    "UnsafePath",
    "UploadUnknown",
    "error_for",
]


class OrchestratorError(Exception):
    """A refusal or failure with a machine-readable `code` and a human-readable `message`."""

    code: str = "unknown"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(f"{code or self.code}: {message}")
        self.message = message
        if code is not None:
            self.code = code


# --- the contract's codes (orchestrator_contract.codes.ErrorCode), one class each ------------------


class InternalError(OrchestratorError):
    code = ErrorCode.INTERNAL_ERROR


class PermanentError(OrchestratorError):
    code = ErrorCode.PERMANENT_ERROR


class InvalidEvent(OrchestratorError):
    code = ErrorCode.INVALID_EVENT


class Unauthenticated(OrchestratorError):
    code = ErrorCode.UNAUTHENTICATED


class ImageNotAllowed(OrchestratorError):
    code = ErrorCode.IMAGE_NOT_ALLOWED


class DomainNotAllowed(OrchestratorError):
    code = ErrorCode.DOMAIN_NOT_ALLOWED


class DomainConflict(OrchestratorError):
    code = ErrorCode.DOMAIN_CONFLICT


class UnsafePath(OrchestratorError):
    code = ErrorCode.UNSAFE_PATH


class NotFound(OrchestratorError):
    code = ErrorCode.NOT_FOUND


class DockerRejected(OrchestratorError):
    code = ErrorCode.DOCKER_REJECTED


class ServiceFailed(OrchestratorError):
    code = ErrorCode.SERVICE_FAILED


class RunScriptFailed(OrchestratorError):
    code = ErrorCode.RUN_SCRIPT_FAILED


class NotListening(OrchestratorError):
    code = ErrorCode.NOT_LISTENING


class ImageNotFound(OrchestratorError):
    code = ErrorCode.IMAGE_NOT_FOUND


class NoRunScript(OrchestratorError):
    code = ErrorCode.NO_RUN_SCRIPT


class ImageBuildFailed(OrchestratorError):
    code = ErrorCode.IMAGE_BUILD_FAILED


class NotRouted(OrchestratorError):
    code = ErrorCode.NOT_ROUTED


class ConvergeTimeout(OrchestratorError):
    code = ErrorCode.CONVERGE_TIMEOUT


class TransientError(OrchestratorError):
    code = ErrorCode.TRANSIENT_ERROR


class DockerUnavailable(OrchestratorError):
    code = ErrorCode.DOCKER_UNAVAILABLE


class DockerError(OrchestratorError):
    code = ErrorCode.DOCKER_ERROR


class DockerConflict(OrchestratorError):
    code = ErrorCode.DOCKER_CONFLICT


class PublishFailed(OrchestratorError):
    """The orchestrator could not publish (its side of the broker)."""

    code = ErrorCode.PUBLISH_FAILED


class BrokerSetup(OrchestratorError):
    code = ErrorCode.BROKER_SETUP


class UnknownSession(OrchestratorError):
    code = ErrorCode.UNKNOWN_SESSION


class TerminalLimit(OrchestratorError):
    code = ErrorCode.TERMINAL_LIMIT


class TerminalBusy(OrchestratorError):
    code = ErrorCode.TERMINAL_BUSY


class InvalidRequest(OrchestratorError):
    code = ErrorCode.INVALID_REQUEST


class SiteNotFound(OrchestratorError):
    code = ErrorCode.SITE_NOT_FOUND


class NotADirectory(OrchestratorError):
    code = ErrorCode.NOT_A_DIRECTORY


class IsADirectory(OrchestratorError):
    code = ErrorCode.IS_A_DIRECTORY


class Exists(OrchestratorError):
    code = ErrorCode.EXISTS


class NotEmpty(OrchestratorError):
    code = ErrorCode.NOT_EMPTY


class NotRegular(OrchestratorError):
    code = ErrorCode.NOT_REGULAR


class TooLarge(OrchestratorError):
    code = ErrorCode.TOO_LARGE


class PreconditionFailed(OrchestratorError):
    code = ErrorCode.PRECONDITION_FAILED


class UploadUnknown(OrchestratorError):
    code = ErrorCode.UPLOAD_UNKNOWN


class Busy(OrchestratorError):
    code = ErrorCode.BUSY


class IoError(OrchestratorError):
    code = ErrorCode.IO_ERROR


class DiskQuotaExceeded(OrchestratorError):
    code = ErrorCode.DISK_QUOTA_EXCEEDED


class DatabaseKindChange(OrchestratorError):
    code = ErrorCode.DATABASE_KIND_CHANGE


class DatabaseNotOffered(OrchestratorError):
    code = ErrorCode.DATABASE_NOT_OFFERED


class DatabaseUnavailable(OrchestratorError):
    code = ErrorCode.DATABASE_UNAVAILABLE


class DatabaseError(OrchestratorError):
    code = ErrorCode.DATABASE_ERROR


class NoDatabase(OrchestratorError):
    code = ErrorCode.NO_DATABASE


class QueryDisabled(OrchestratorError):
    code = ErrorCode.QUERY_DISABLED


class QueryFailed(OrchestratorError):
    code = ErrorCode.QUERY_FAILED


class QueryTimeout(OrchestratorError):
    code = ErrorCode.QUERY_TIMEOUT


class MultipleStatements(OrchestratorError):
    code = ErrorCode.MULTIPLE_STATEMENTS


_BY_CODE: dict[str, type[OrchestratorError]] = {
    cls.code: cls
    for cls in (
        InternalError, PermanentError, InvalidEvent, Unauthenticated, ImageNotAllowed, DomainNotAllowed,
        DomainConflict, UnsafePath, NotFound, DockerRejected, ServiceFailed, RunScriptFailed, NotListening,
        ImageNotFound, NoRunScript, ImageBuildFailed, NotRouted, ConvergeTimeout, TransientError,
        DockerUnavailable, DockerError, DockerConflict, PublishFailed, BrokerSetup, UnknownSession,
        TerminalLimit, TerminalBusy, InvalidRequest, SiteNotFound, NotADirectory, IsADirectory, Exists,
        NotEmpty, NotRegular, TooLarge, PreconditionFailed, UploadUnknown, Busy, IoError, DiskQuotaExceeded,
        DatabaseKindChange, DatabaseNotOffered, DatabaseUnavailable, DatabaseError, NoDatabase, QueryDisabled,
        QueryFailed, QueryTimeout, MultipleStatements,
    )
}  # fmt: skip


def error_for(code: str, message: str) -> OrchestratorError:
    """The exception of an error code, the contract's or the client's own (`OrchestratorError`
    itself for a code this client does not know yet)."""
    cls = _BY_CODE.get(code) or _CLIENTS.get(code)
    return cls(message) if cls is not None else OrchestratorError(message, code)


# --- the client's own ----------------------------------------------------------------------------


class ClientError(OrchestratorError):
    """Raised by this client itself, not reported by the orchestrator."""

    code = "client_error"


class PublishRefused(ClientError):
    """The broker did not take a publish: it returned it (no queue is bound: the orchestrator's
    topology is missing) or refused it (a bounded queue is full, or a right is missing). Nothing
    was queued; publishing again later is safe."""

    code = "publish_refused"


class AccessRefused(ClientError):
    """The broker refused the user this (a queue, binding or consume outside its rights: see the
    orchestrator's docs/security.md)."""

    code = "access_refused"


class BrokerUnavailable(ClientError):
    """No connection to the broker right now (the client reconnects by itself)."""

    code = "broker_unavailable"


class StreamOverflow(ClientError):
    """A stream's replies (an archive, a log follow) came faster than they were read, past the
    client's bound; the stream is ended."""

    code = "stream_overflow"


class ContractMismatch(ClientError):
    """A message of another major version of the contract than this client's."""

    code = "contract_mismatch"


_CLIENTS: dict[str, type[OrchestratorError]] = {
    cls.code: cls for cls in (PublishRefused, AccessRefused, BrokerUnavailable, StreamOverflow, ContractMismatch)
}
