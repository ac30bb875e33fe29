"""The pure rules of site paths, cursors, etags and modes, and the file requests' decoding."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.bus.decoding import MAX_FILE_REQUEST_BODY, parse_file_request
from orchestrator.bus.replies import error_reply, ok_reply, read_reply
from orchestrator.errors import FileRefused, InvalidRequest
from orchestrator.files import paths
from orchestrator.files.operations import Chunk
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import FILE_REQUESTS, FilesChmod, FilesWrite, ReadResult


@pytest.mark.parametrize(
    ("path", "parts"),
    [("", ()), ("public", ("public",)), ("public/a b/ü.html", ("public", "a b", "ü.html")), ("..a/.b", ("..a", ".b"))],
)
def test_a_relative_path_splits_into_its_components(path: str, parts: tuple[str, ...]) -> None:
    assert paths.split(path) == parts
    assert paths.join(parts) == path


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../x",
        "public/../../x",
        "public/./x",
        ".",
        "a//b",
        "public/",
        "a\0b",
        "x" * 256,
        "public/.~orchestrator-upload-0123",
        "bad-\udcff",
    ],
)
def test_a_path_that_could_leave_or_misname_is_unsafe(path: str) -> None:
    with pytest.raises(FileRefused) as caught:
        paths.split(path)
    assert caught.value.code is ErrorCode.UNSAFE_PATH


@given(st.text(max_size=300))
def test_a_split_path_never_holds_a_way_out(path: str) -> None:
    try:
        parts = paths.split(path)
    except FileRefused:
        return
    assert all(part not in ("", ".", "..") and "/" not in part and "\0" not in part for part in parts)
    assert not path.startswith("/")


def test_the_skeleton_is_the_site_directory_public_and_private() -> None:
    assert paths.is_skeleton(()) and paths.is_skeleton(("public",)) and paths.is_skeleton(("private",))
    assert not paths.is_skeleton(("public", "index.html")) and not paths.is_skeleton(("other",))


def test_upload_temporaries_are_hidden_and_known_by_their_upload() -> None:
    upload = uuid.uuid4()
    name = paths.temp_name(upload)
    assert paths.is_temp(name) and not paths.listable(name)
    assert paths.upload_of(name) == upload
    assert paths.upload_of(paths.TEMP_PREFIX + "not-a-uuid") is None
    assert paths.upload_of("index.html") is None


def test_a_name_that_is_not_utf8_is_not_listed() -> None:
    assert paths.listable("index.html") and paths.listable("ü")
    assert not paths.listable(os.fsdecode(b"bad-\xff"))


@given(st.text(min_size=1, max_size=255).filter(lambda s: "/" not in s and "\0" not in s))
def test_a_cursor_round_trips_any_name(name: str) -> None:
    try:
        name.encode()
    except UnicodeEncodeError:
        return
    cursor = paths.encode_cursor(name)
    assert cursor.isascii() and paths.decode_cursor(cursor) == name


@pytest.mark.parametrize("cursor", ["", "forged", "n1.!!!", "n1.", "n1." + "L3gy", "n2.YQ"])
def test_a_cursor_not_given_out_here_is_an_invalid_request(cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        paths.decode_cursor(cursor)


def test_no_cursor_is_the_first_page() -> None:
    assert paths.decode_cursor(None) is None


def _stat(size: int = 5, ino: int = 7, mtime_ns: int = 1, ctime_ns: int = 2) -> os.stat_result:
    return os.stat_result(
        (0o100660, ino, 1, 1, 0, 0, size, 0, 0, 0), {"st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns}
    )


def test_an_etag_changes_with_the_content_version_of_the_file() -> None:
    base = paths.etag(_stat())
    assert paths.etag(_stat()) == base
    for change in ({"size": 6}, {"mtime_ns": 3}, {"ctime_ns": 3}, {"ino": 8}):
        assert paths.etag(_stat(**change)) != base, change
    assert len(base) == 32 and all(c in "0123456789abcdef" for c in base)  # safe in a JSON string as is


@pytest.mark.parametrize("mode", [0, 0o644, 0o755, 0o777])
def test_permission_bits_are_a_mode(mode: int) -> None:
    assert FilesChmod(site_id=1, path="a", mode=mode).mode == mode


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o1777, 0o7777, -1, 0o10000])
def test_setuid_setgid_and_sticky_bits_are_refused(mode: int) -> None:
    with pytest.raises(ValidationError):
        FilesChmod(site_id=1, path="a", mode=mode)


def test_every_operation_decodes_under_its_routing_key_only() -> None:
    body = json.dumps({"site_id": 1, "path": "a", "to": "b", "mode": 420, "stream_id": str(uuid.uuid4())}).encode()
    for op in ("files.list", "files.stat", "files.rename", "files.chmod", "logs.stop"):
        assert parse_file_request(body, op).type == op
    for key in ("files.bogus", "site.created", ""):
        with pytest.raises(InvalidRequest):
            parse_file_request(body, key)
    assert set(FILE_REQUESTS) >= {"files.archive", "logs.follow", "logs.tail", "files.usage"}


@pytest.mark.parametrize(
    ("op", "body"),
    [
        ("files.list", b"{not json"),
        ("files.list", b'{"site_id": "1"}'),  # strict: "1" is not a site id
        ("files.list", b'{"site_id": 1, "limit": 1001}'),
        ("files.read", b'{"site_id": 1}'),  # path is required
        ("files.chmod", b'{"site_id": 1, "path": "a", "mode": 2541}'),  # 0o4755
        ("files.write", b'{"site_id": 1, "path": "a", "upload_id": "x", "offset": 0}'),
        ("files.list", b'{"site_id": 1, "path": "' + b"a" * 5000 + b'"}'),
    ],
)
def test_a_malformed_request_is_an_invalid_request(op: str, body: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_file_request(body, op)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert caught.value.dead_letter  # an operator sees Director's bug


def test_a_body_past_the_largest_chunk_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidRequest, match="larger than"):
        parse_file_request(b" " * (MAX_FILE_REQUEST_BODY + 1), "files.write")


def test_a_chunk_of_the_largest_size_fits_in_a_request() -> None:
    data = "A" * (4 * ((16 * 1024 * 1024 + 2) // 3))
    body = json.dumps({"site_id": 1, "path": "a", "upload_id": str(uuid.uuid4()), "offset": 0, "data": data})
    assert isinstance(parse_file_request(body.encode(), "files.write"), FilesWrite)


def test_the_read_reply_written_directly_is_the_models_reply() -> None:
    chunk = Chunk(b"\x00hello\xff" * 100, 10, 1000, False, "0123456789abcdef0123456789abcdef")
    direct = json.loads(read_reply(chunk))
    model = json.loads(
        ok_reply(ReadResult(data="", offset=10, size=1000, eof=False, etag="0123456789abcdef0123456789abcdef"))
    )
    model["result"]["data"] = direct["result"]["data"]
    assert direct == model
    assert ReadResult.model_validate(direct["result"]).eof is False


def test_an_error_reply_carries_its_code_and_message() -> None:
    assert json.loads(error_reply(ErrorCode.BUSY, "try again")) == {
        "ok": False,
        "error": {"code": "busy", "message": "try again"},
    }
