"""Pure rules of site paths: how a request's path splits into components, which entries are ours
(upload temporaries) or the site's skeleton, list cursors and etags. No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.errors import FileRefused, InvalidRequest
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import MAX_TARGET_BYTES, Entry, EntryType

# An upload's temporary file, beside its target: hidden from `list`, never addressable by a request.
TEMP_PREFIX = ".~orchestrator-upload-"
# The site directory and these children cannot be deleted, renamed away or replaced.
SKELETON = ("public", "private")
MAX_NAME_BYTES = 255
CURSOR_PREFIX = "n1."

Parts = tuple[str, ...]


def split(path: str) -> Parts:
    """`"public/a.html"` -> `("public", "a.html")`; `""` -> `()` (the site directory). Anything
    that could leave the site or name something else than it says is `unsafe_path`."""
    if path == "":
        return ()
    if path.startswith("/"):
        raise _unsafe(path, "is absolute; paths are relative to the site directory")
    if "\0" in path:
        raise _unsafe(path, "holds a NUL character")
    parts = tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise _unsafe(path, 'has an empty, "." or ".." component')
        if part.startswith(TEMP_PREFIX):
            raise _unsafe(path, "names an upload's temporary file")
        try:
            encoded = part.encode()  # strict: a lone surrogate could name raw bytes we cannot list
        except UnicodeError:
            raise _unsafe(path, "is not valid Unicode") from None
        if len(encoded) > MAX_NAME_BYTES:
            raise _unsafe(path, f"has a component longer than {MAX_NAME_BYTES} bytes")
    return parts


def join(parts: Sequence[str]) -> str:
    return "/".join(parts)


def is_skeleton(parts: Parts) -> bool:
    """The site directory itself, `public` or `private`: never deleted, renamed or replaced."""
    return len(parts) == 0 or (len(parts) == 1 and parts[0] in SKELETON)


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def temp_name(upload_id: uuid.UUID) -> str:
    return f"{TEMP_PREFIX}{upload_id.hex}"


def upload_of(name: str) -> uuid.UUID | None:
    """The upload a temporary file belongs to (None: not one of ours)."""
    if not is_temp(name):
        return None
    try:
        return uuid.UUID(hex=name[len(TEMP_PREFIX) :])
    except ValueError:
        return None


def listable(name: str) -> bool:
    """Shown in a listing: not an upload's temporary file, and a name JSON can carry (a name that
    is not UTF-8 cannot be addressed by a request either; a terminal can rename it)."""
    if is_temp(name):
        return False
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def encode_cursor(after: str) -> str:
    """A cursor says "the entries after this name": opaque to Director, stable across pages, and
    it costs no memory here (each page is a fresh scan of the directory)."""
    return CURSOR_PREFIX + base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    if not cursor.startswith(CURSOR_PREFIX):
        raise InvalidRequest("cursor is not one this orchestrator gave out")
    raw = cursor[len(CURSOR_PREFIX) :]
    try:
        name = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, ValueError):
        raise InvalidRequest("cursor is not one this orchestrator gave out") from None
    if not name or "/" in name or "\0" in name:
        raise InvalidRequest("cursor is not one this orchestrator gave out")
    return name


def etag(st: os.stat_result) -> str:
    """A validator of a file's content version: its inode, size, and modification and change
    times in nanoseconds. Every write through the bus makes a new inode, and any change by the
    site's own processes moves the change time (fine-grained on this kernel once it was read)."""
    key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def entry_type(mode: int) -> EntryType:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def link_text(target: str) -> tuple[str, bool]:
    """A link's text as `os.readlink` gives it (bytes that are not UTF-8 as surrogates) made
    showable: at most MAX_TARGET_BYTES bytes, anything not UTF-8 as U+FFFD, and whether that
    changed it."""
    raw = os.fsencode(target)
    shown = raw[:MAX_TARGET_BYTES].decode(errors="replace")
    return shown, len(raw) > MAX_TARGET_BYTES or shown.encode() != raw


def entry(parts: Parts, st: os.stat_result, target: str | None = None) -> Entry:
    shown, truncated = link_text(target) if target is not None else (None, False)
    return Entry(
        name=parts[-1] if parts else "",
        path=join(parts),
        type=entry_type(st.st_mode),
        size=st.st_size,
        mode=stat.S_IMODE(st.st_mode),
        mtime=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC),
        target=shown,
        target_truncated=truncated,
    )


def _unsafe(path: str, why: str) -> FileRefused:
    return FileRefused(f"path {path[:200]!r} {why}", code=ErrorCode.UNSAFE_PATH)
