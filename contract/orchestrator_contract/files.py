"""Site files and site logs: Director's file manager and log view as request/reply over the bus.

Director publishes a request to `director.files` with routing key = the operation, `reply_to` and
`correlation_id` set; every answer goes to the default exchange with routing key = `reply_to` and
the same `correlation_id`: `{"ok": true, "result": {...}}` or `{"ok": false, "error": {"code",
"message"}}`. `files.archive` and `logs.follow` answer with a stream of replies.

Paths are relative to the site directory (`""` is the site root); they are checked, and walked
without following links, by `orchestrator.files`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field

from orchestrator_contract.base import Model, SiteId
from orchestrator_contract.codes import ErrorCode

# The largest chunk any setting allows (FILES_CHUNK_BYTES is at most 16 MiB); the setting is the
# real bound, checked when the request is carried out.
MAX_CHUNK_BYTES = 16 * 1024 * 1024
MAX_PATH = 4096
MAX_LIMIT = 1000
DEFAULT_LIMIT = 200
MAX_LOG_LINES = 1000
# A link text (up to 4,095 bytes) is shown up to this many bytes, a log line up to this many
# characters; past them the text is cut and marked (`target_truncated`, `truncated`).
MAX_TARGET_BYTES = 1024
MAX_LOG_LINE_CHARS = 8192
PERMISSION_BITS = 0o777

RelPath = Annotated[
    str,
    Field(
        max_length=MAX_PATH,
        description='Relative to the site directory, "/"-separated; "" is the site directory itself. '
        'No leading "/", no "." or ".." components.',
    ),
]


def _permission_bits(mode: int) -> int:
    if mode & ~PERMISSION_BITS:
        raise ValueError("mode holds permission bits only (0 to 0o777): setuid, setgid and sticky bits are refused")
    return mode


Mode = Annotated[
    int,
    Field(ge=0, le=0o7777, description="Permission bits as an integer (0o644 is 420); at most 0o777."),
    AfterValidator(_permission_bits),
]


class _Request(Model):
    site_id: SiteId


class FilesList(_Request):
    """The entries of a directory, sorted by name, a page at a time; links are not followed."""

    type: Literal["files.list"] = "files.list"
    path: RelPath = ""
    cursor: str | None = Field(
        default=None, max_length=2048, description="`next_cursor` of the previous page; null: the first page."
    )
    limit: int = Field(
        default=DEFAULT_LIMIT,
        ge=1,
        le=MAX_LIMIT,
        description="Entries at most; a page holds fewer when they would make the reply too large "
        "(long names or link texts): `next_cursor` then goes on from the last one it holds.",
    )


class FilesStat(_Request):
    """One entry (the link itself for a symlink), with the file's `etag`."""

    type: Literal["files.stat"] = "files.stat"
    path: RelPath = ""


class FilesRead(_Request):
    """A byte range of a regular file."""

    type: Literal["files.read"] = "files.read"
    path: RelPath
    offset: int = Field(default=0, ge=0, le=2**63 - 1)
    length: int | None = Field(
        default=None,
        ge=0,
        le=2**31,
        description="Bytes to read; null: FILES_CHUNK_BYTES. More than FILES_CHUNK_BYTES is cut to it.",
    )


class FilesWrite(_Request):
    """One chunk of an upload. Chunks go in order into a hidden temporary file beside the target;
    the `final` one is synced and renamed over the target atomically."""

    type: Literal["files.write"] = "files.write"
    path: RelPath
    upload_id: uuid.UUID = Field(description="Chosen by Director for the upload; the same on every chunk.")
    offset: int = Field(ge=0, le=2**63 - 1, description="Where this chunk starts: the bytes received so far.")
    # Checked as it is decoded, once, by the file thread that writes it (a malformed chunk is an
    # `invalid_request`): a second decoding here would double the cost of an upload.
    data: str = Field(
        default="",
        max_length=4 * ((MAX_CHUNK_BYTES + 2) // 3),
        description="The chunk's bytes, standard base64 (at most FILES_CHUNK_BYTES of them).",
        json_schema_extra={"contentEncoding": "base64"},
    )
    final: bool = False
    if_match: str | None = Field(
        default=None, max_length=128, description="Only replace the file if its `etag` is still this."
    )
    if_none_match: bool = Field(default=False, description="Only create: fail if the path exists.")
    mode: Mode | None = Field(
        default=None, description="Permission bits of the file; null: the replaced file's, or 0o660 for a new one."
    )


class FilesMkdir(_Request):
    type: Literal["files.mkdir"] = "files.mkdir"
    path: RelPath
    parents: bool = Field(default=False, description="Create missing parents too; an existing directory is fine.")
    mode: Mode | None = Field(default=None, description="Permission bits; null: 0o770.")


class FilesRename(_Request):
    type: Literal["files.rename"] = "files.rename"
    path: RelPath
    to: RelPath
    overwrite: bool = Field(default=False, description="Replace what is at `to` (a directory only if empty).")


class FilesDelete(_Request):
    type: Literal["files.delete"] = "files.delete"
    path: RelPath
    recursive: bool = Field(default=False, description="Delete a directory with everything in it.")


class FilesChmod(_Request):
    type: Literal["files.chmod"] = "files.chmod"
    path: RelPath
    mode: Mode


class FilesUsage(_Request):
    """Bytes, files and directories under a directory (the whole site by default)."""

    type: Literal["files.usage"] = "files.usage"
    path: RelPath = ""


class FilesArchive(_Request):
    """A zip of a directory, streamed as replies (`ArchiveChunk`)."""

    type: Literal["files.archive"] = "files.archive"
    path: RelPath = ""


class LogsTail(_Request):
    """The last lines of the site's service tasks, oldest first."""

    type: Literal["logs.tail"] = "logs.tail"
    lines: int = Field(default=100, ge=0, le=MAX_LOG_LINES)


class LogsFollow(_Request):
    """The site's log lines as they come, streamed as replies (`LogsUpdate`) until `logs.stop`."""

    type: Literal["logs.follow"] = "logs.follow"
    stream_id: uuid.UUID = Field(description="Chosen by Director; names the stream in `logs.stop`.")
    lines: int = Field(default=0, ge=0, le=MAX_LOG_LINES, description="Lines of backlog sent first.")


class LogsStop(Model):
    type: Literal["logs.stop"] = "logs.stop"
    stream_id: uuid.UUID
    site_id: SiteId | None = None


FileRequest = (
    FilesList
    | FilesStat
    | FilesRead
    | FilesWrite
    | FilesMkdir
    | FilesRename
    | FilesDelete
    | FilesChmod
    | FilesUsage
    | FilesArchive
    | LogsTail
    | LogsFollow
    | LogsStop
)
FILE_REQUESTS: dict[str, type[FileRequest]] = {
    model.model_fields["type"].default: model
    for model in (
        FilesList,
        FilesStat,
        FilesRead,
        FilesWrite,
        FilesMkdir,
        FilesRename,
        FilesDelete,
        FilesChmod,
        FilesUsage,
        FilesArchive,
        LogsTail,
        LogsFollow,
        LogsStop,
    )
}
# Answered with a stream of replies rather than one.
STREAMING = ("files.archive", "logs.follow")


# --- replies -------------------------------------------------------------------------------------

EntryType = Literal["file", "dir", "symlink", "other"]


class Entry(Model):
    """A directory entry as `lstat` sees it: a link is the link, never its target."""

    name: str
    path: str = Field(description="Relative to the site directory.")
    type: EntryType = Field(description='"other": a FIFO, socket or device (never opened).')
    size: int
    mode: int = Field(description="Permission bits as an integer.")
    mtime: AwareDatetime
    target: str | None = Field(default=None, description="Symlinks only: the link text, never followed.")
    target_truncated: bool = Field(
        default=False,
        description=f"`target` is not the exact link text: it was longer than {MAX_TARGET_BYTES} bytes (cut) or "
        "not UTF-8 (bytes that are not shown as U+FFFD).",
    )


class ListResult(Model):
    entries: list[Entry]
    next_cursor: str | None = Field(description="Pass it as `cursor` for the next page; null: this was the last.")


class StatResult(Model):
    entry: Entry
    etag: str | None = Field(default=None, description="Regular files: changes whenever the file does.")


class ReadResult(Model):
    data: str = Field(description="The bytes read, base64.", json_schema_extra={"contentEncoding": "base64"})
    offset: int
    size: int = Field(description="The file's size now.")
    eof: bool = Field(description="The range reached the end of the file.")
    etag: str


class WriteResult(Model):
    received: int = Field(description="Bytes of the upload received so far.")
    entry: Entry | None = Field(default=None, description="The final chunk: the file now in place.")
    etag: str | None = None


class EntryResult(Model):
    entry: Entry


class DeleteResult(Model):
    deleted: int = Field(description="Entries removed (a directory and everything in it counts each).")


class UsageResult(Model):
    bytes: int = Field(description="Sizes of the files (a hard-linked file counted once) and link texts.")
    files: int
    dirs: int


class ArchiveChunk(Model):
    """One piece of a zip of the directory; concatenated in `seq` order they are the zip."""

    seq: int = Field(ge=0)
    data: str = Field(json_schema_extra={"contentEncoding": "base64"})
    last: bool
    sha256: str | None = Field(default=None, description="The last chunk: sha256 of the whole zip, hex.")
    size: int | None = Field(default=None, description="The last chunk: bytes of the whole zip.")


class LogLine(Model):
    ts: AwareDatetime
    task: str = Field(description="The swarm task that wrote the line.")
    text: str = Field(description="The line, the site's env values masked (***).")
    truncated: bool = Field(
        default=False, description=f"The line was longer than {MAX_LOG_LINE_CHARS} characters: cut."
    )


class LogsResult(Model):
    lines: list[LogLine]
    omitted: int = Field(
        default=0,
        ge=0,
        description="The oldest of the lines asked for that were left out to keep the reply below the broker's "
        "message size limit (a follow sends such lines in more replies instead).",
    )


class LogsUpdate(Model):
    """One reply of a `logs.follow` stream."""

    stream_id: uuid.UUID
    seq: int = Field(ge=0)
    lines: list[LogLine] = Field(description="A batch of lines; more lines than one reply may hold go in several.")
    last: bool = Field(default=False, description="The stream ends with this reply (`reason` says why).")
    reason: str | None = None


class LogsStopResult(Model):
    stream_id: uuid.UUID
    stopped: bool = Field(description="False: no such stream was running (it ended already).")


FileResult = (
    ListResult
    | StatResult
    | ReadResult
    | WriteResult
    | EntryResult
    | DeleteResult
    | UsageResult
    | ArchiveChunk
    | LogsResult
    | LogsUpdate
    | LogsStopResult
)
# What a successful reply of each operation carries as `result`.
RESULTS: dict[str, type[FileResult]] = {
    "files.list": ListResult,
    "files.stat": StatResult,
    "files.read": ReadResult,
    "files.write": WriteResult,
    "files.mkdir": EntryResult,
    "files.rename": EntryResult,
    "files.delete": DeleteResult,
    "files.chmod": EntryResult,
    "files.usage": UsageResult,
    "files.archive": ArchiveChunk,
    "logs.tail": LogsResult,
    "logs.follow": LogsUpdate,
    "logs.stop": LogsStopResult,
}


class OkReply(Model):
    """The request succeeded; `result` is the operation's (see `RESULTS`)."""

    ok: Literal[True] = True
    result: FileResult


class ReplyError(Model):
    code: ErrorCode = Field(description="Machine-readable error code.")
    message: str


class ErrorReply(Model):
    """The request failed; a stream ends with one too."""

    ok: Literal[False] = False
    error: ReplyError
