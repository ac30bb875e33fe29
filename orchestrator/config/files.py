"""Site files and logs: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pydantic import Field

from orchestrator.config.base import Group

# A file chunk's message, besides the chunk's base64: the request's path (4,096 characters, 6
# bytes each when JSON escapes them) and the other fields, with room to spare.
CHUNK_MESSAGE_OVERHEAD = 64 * 1024


def chunk_message_bytes(chunk_bytes: int) -> int:
    """The largest message that carries a file chunk of `chunk_bytes` (a write or a read reply)."""
    return 4 * ((chunk_bytes + 2) // 3) + CHUNK_MESSAGE_OVERHEAD


class FileSettings(Group):
    # --- site files and logs ------------------------------------------------------------------
    # Requests held at once on the file channel (a chunk is at most ~1.4 MB: this bounds memory).
    files_prefetch: int = Field(default=32, ge=1)
    # Threads doing file I/O (the event loop never touches a site's files).
    files_workers: int = Field(default=8, ge=1)
    # File threads one site's requests may hold at once: its other requests wait their turn
    # without a thread, so a site whose requests are slow leaves the rest to the other sites.
    files_site_threads: int = Field(default=2, ge=1)
    # Requests of one site in flight at once; past it the reply is `busy`.
    files_site_concurrency: int = Field(default=12, ge=1)
    # The most bytes one `files.read` returns and one `files.write` chunk carries.
    files_chunk_bytes: int = Field(default=1024 * 1024, ge=4096, le=16 * 1024 * 1024)
    # The largest upload, and the largest zip a `files.archive` streams (past them: `too_large`).
    files_max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=0)
    files_max_archive_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    # Walks of a whole tree (usage, archive, recursive delete) and scans of one directory (a
    # listing page) stop with `too_large` past these budgets instead of running on.
    files_walk_max_seconds: float = Field(default=30.0, gt=0)
    files_walk_max_entries: int = Field(default=200_000, ge=1)
    # Uploads under way, in all and per site (more: `busy`), and how long one may sit idle
    # before its temporary file is removed.
    files_max_uploads: int = Field(default=64, ge=1)
    files_max_uploads_per_site: int = Field(default=4, ge=1)
    files_upload_idle_seconds: float = Field(default=300.0, gt=0)
    # Streams (archives, log follows) under way, in all and per site (more: `busy`).
    files_max_streams: int = Field(default=32, ge=1)
    files_max_streams_per_site: int = Field(default=4, ge=1)
    # A request nobody took this long is dropped by the broker (its requester gave up long ago);
    # at most this many wait in the queue (more: the broker refuses Director's publish).
    files_request_ttl_seconds: float = Field(default=60.0, gt=0)
    files_queue_max_length: int = Field(default=10_000, ge=1)
    # A `logs.follow` ends after this long at the latest.
    logs_follow_max_seconds: float = Field(default=3600.0, gt=0)
