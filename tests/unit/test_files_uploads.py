"""Uploads: chunks in order into a hidden temporary file, the final one renamed into place; their
bounds, their expiry, and redelivered or reordered chunks."""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.errors import FileRefused
from orchestrator.files import paths, uploads
from orchestrator.files.uploads import Limits, Uploads
from orchestrator.files.worker import SiteRef, Worker
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import FilesWrite

SITE = SiteRef(1, "site_0001", os.getuid())  # the test's own user: no switch needed


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "site_0001" / "public").mkdir(parents=True)
    return tmp_path


@pytest.fixture
async def registry(root: Path) -> AsyncIterator[Uploads]:
    worker = Worker(root, 2)
    found = Uploads(worker, Limits(max_file_bytes=100, max_uploads=3, max_per_site=2, idle_seconds=1.0))
    found.start()
    yield found
    await found.stop()
    worker.close()


def chunk(
    upload: uuid.UUID, offset: int, data: bytes, final: bool = False, path: str = "public/f.txt", **more: object
) -> tuple[FilesWrite, tuple[str, ...], bytes]:
    request = FilesWrite.model_validate(
        {"site_id": 1, "path": path, "upload_id": upload, "offset": offset,
         "data": base64.b64encode(data).decode(), "final": final, **more}
    )  # fmt: skip
    return request, paths.split(path), data


async def write(registry: Uploads, *args: object, **more: object) -> object:
    request, parts, _ = chunk(*args, **more)  # type: ignore[arg-type]
    return await registry.write(SITE, request, parts)


def temporaries(root: Path) -> list[str]:
    return [p.name for p in (root / "site_0001" / "public").iterdir() if paths.is_temp(p.name)]


async def code(call: object) -> ErrorCode:
    with pytest.raises(FileRefused) as caught:
        await call  # type: ignore[misc]
    return caught.value.code


async def test_chunks_land_in_a_hidden_file_renamed_into_place_by_the_final_one(registry: Uploads, root: Path) -> None:
    upload = uuid.uuid4()
    target = root / "site_0001" / "public" / "f.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    assert (await write(registry, upload, 0, b"abc")).received == 3  # type: ignore[attr-defined]
    assert target.read_text() == "old" and temporaries(root) == [paths.temp_name(upload)]
    done = await write(registry, upload, 3, b"def", True)
    assert target.read_text() == "abcdef" and temporaries(root) == []
    assert done.entry.size == 6 and done.etag == paths.etag(target.stat())  # type: ignore[attr-defined]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the replaced file's mode


async def test_a_new_file_gets_0660_or_the_mode_asked(registry: Uploads, root: Path) -> None:
    await write(registry, uuid.uuid4(), 0, b"x", True, path="public/new")
    assert stat.S_IMODE((root / "site_0001" / "public" / "new").stat().st_mode) == 0o660
    await write(registry, uuid.uuid4(), 0, b"x", True, path="public/run.sh", mode=0o750)
    assert stat.S_IMODE((root / "site_0001" / "public" / "run.sh").stat().st_mode) == 0o750


async def test_a_chunk_out_of_order_waits_for_the_one_before(registry: Uploads, root: Path) -> None:
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"aa")
    third = asyncio.create_task(write(registry, upload, 4, b"cc", True))
    await asyncio.sleep(0.05)
    assert not third.done()
    await write(registry, upload, 2, b"bb")
    await third
    assert (root / "site_0001" / "public" / "f.txt").read_bytes() == b"aabbcc"


async def test_the_last_chunk_again_is_answered_without_writing_twice(registry: Uploads, root: Path) -> None:
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"ab")
    assert (await write(registry, upload, 0, b"ab")).received == 2  # type: ignore[attr-defined]
    first = await write(registry, upload, 2, b"c", True)
    assert await write(registry, upload, 2, b"c", True) == first  # the final one, redelivered
    assert (root / "site_0001" / "public" / "f.txt").read_bytes() == b"abc"


async def test_an_unknown_upload_or_a_gap_is_upload_unknown(registry: Uploads, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "ORDER_WAIT_SECONDS", 0.1)
    monkeypatch.setattr(uploads, "UNKNOWN_WAIT_SECONDS", 0.1)
    assert await code(write(registry, uuid.uuid4(), 5, b"x")) is ErrorCode.UPLOAD_UNKNOWN
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"abc")
    assert await code(write(registry, upload, 7, b"x")) is ErrorCode.UPLOAD_UNKNOWN  # bytes 3-6 never came
    assert await code(write(registry, upload, 1, b"zz")) is ErrorCode.UPLOAD_UNKNOWN  # not the last chunk again
    assert await code(write(registry, upload, 3, b"x", path="public/other")) is ErrorCode.UPLOAD_UNKNOWN


async def test_an_upload_past_the_largest_file_is_too_large_and_removed(registry: Uploads, root: Path) -> None:
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"x" * 60)
    assert await code(write(registry, upload, 60, b"x" * 41)) is ErrorCode.TOO_LARGE
    assert temporaries(root) == [] and registry.live() == frozenset()


async def test_uploads_are_bounded_per_site_and_in_all(registry: Uploads) -> None:
    await write(registry, uuid.uuid4(), 0, b"x", path="public/a")
    await write(registry, uuid.uuid4(), 0, b"x", path="public/b")
    assert await code(write(registry, uuid.uuid4(), 0, b"x", path="public/c")) is ErrorCode.BUSY


async def test_an_idle_upload_expires_with_its_temporary_file(registry: Uploads, root: Path) -> None:
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"x")
    deadline = time.monotonic() + 30  # idle 1 s, swept every third of it: far less on a quiet machine
    while (registry.live() or temporaries(root)) and time.monotonic() < deadline:  # noqa: ASYNC110 (no event)
        await asyncio.sleep(0.05)
    assert registry.live() == frozenset() and temporaries(root) == []


async def test_conditions_are_checked_at_the_start_and_at_the_end(registry: Uploads, root: Path) -> None:
    target = root / "site_0001" / "public" / "f.txt"
    assert await code(write(registry, uuid.uuid4(), 0, b"x", True, if_match="x")) is ErrorCode.PRECONDITION_FAILED
    await write(registry, uuid.uuid4(), 0, b"v1", True, if_none_match=True)
    assert await code(write(registry, uuid.uuid4(), 0, b"x", True, if_none_match=True)) is (
        ErrorCode.PRECONDITION_FAILED
    )
    etag = paths.etag(target.stat())
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"v2", if_match=etag)
    target.write_text("changed by the site meanwhile")
    assert await code(write(registry, upload, 2, b"", True, if_match=etag)) is ErrorCode.PRECONDITION_FAILED
    assert target.read_text() == "changed by the site meanwhile" and temporaries(root) == []


async def test_a_directory_a_fifo_or_the_skeleton_is_not_overwritten(registry: Uploads, root: Path) -> None:
    os.mkfifo(root / "site_0001" / "public" / "fifo")
    (root / "site_0001" / "public" / "dir").mkdir()
    assert await code(write(registry, uuid.uuid4(), 0, b"x", True, path="public/fifo")) is ErrorCode.NOT_REGULAR
    assert await code(write(registry, uuid.uuid4(), 0, b"x", True, path="public/dir")) is ErrorCode.IS_A_DIRECTORY
    assert await code(write(registry, uuid.uuid4(), 0, b"x", True, path="public")) is ErrorCode.IS_A_DIRECTORY


async def test_a_hard_link_is_replaced_not_written_through(registry: Uploads, root: Path) -> None:
    other = root / "elsewhere"
    other.write_text("another site's file")
    os.link(other, root / "site_0001" / "public" / "f.txt")
    await write(registry, uuid.uuid4(), 0, b"mine", True)
    assert other.read_text() == "another site's file"


async def test_deleting_a_site_aborts_its_uploads(registry: Uploads, root: Path) -> None:
    await write(registry, uuid.uuid4(), 0, b"x")
    assert await registry.abort_site(1) == 1
    assert temporaries(root) == [] and registry.live() == frozenset()


async def test_a_chunk_that_is_not_base64_is_an_invalid_request_and_ends_its_upload(
    registry: Uploads, root: Path
) -> None:
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"abc")
    request = FilesWrite(site_id=1, path="public/f.txt", upload_id=upload, offset=3, data="!!!!")
    with pytest.raises(FileRefused) as caught:
        await registry.write(SITE, request, ("public", "f.txt"))
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert temporaries(root) == [] and registry.live() == frozenset()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 1000, 1 << 20])
def test_the_size_of_a_chunk_is_known_before_it_is_decoded(size: int) -> None:
    assert uploads.decoded_size(base64.b64encode(os.urandom(size)).decode()) == size


async def test_a_chunk_of_an_ended_upload_is_refused_at_once_saying_why(registry: Uploads) -> None:
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"x")
    await registry.abort_site(1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(FileRefused, match="ended: the site was deleted"):
        await write(registry, upload, 1, b"y")
    assert asyncio.get_running_loop().time() - started < 0.5


@pytest.mark.parametrize(
    ("errno_", "expected"),
    [(errno.EDQUOT, ErrorCode.DISK_QUOTA_EXCEEDED), (errno.ENOSPC, ErrorCode.TOO_LARGE)],
)
async def test_a_chunk_the_disk_refuses_is_answered_so_and_its_upload_removed(
    registry: Uploads, root: Path, monkeypatch: pytest.MonkeyPatch, errno_: int, expected: ErrorCode
) -> None:
    upload = uuid.uuid4()
    await write(registry, upload, 0, b"x" * 10)
    assert temporaries(root)

    def full(fd: int, data: object) -> int:
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(uploads.os, "write", full)
    assert await code(write(registry, upload, 10, b"y" * 10)) is expected
    assert temporaries(root) == [] and registry.live() == frozenset()


async def test_a_final_sync_the_disk_refuses_is_disk_quota_exceeded_and_leaves_nothing(
    registry: Uploads, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(fd: int) -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(uploads.os, "fsync", refused)
    assert await code(write(registry, uuid.uuid4(), 0, b"x" * 10, final=True)) is ErrorCode.DISK_QUOTA_EXCEEDED
    assert temporaries(root) == [] and not (root / "site_0001" / "public" / "f.txt").exists()


async def test_a_final_chunk_resent_with_another_sites_upload_id_learns_nothing_of_that_upload(
    registry: Uploads, root: Path
) -> None:
    """Completed uploads are remembered by site and upload id (and path): the final chunk again,
    from another site with the same id, is that site's own upload, never the first one's reply."""
    (root / "site_0002" / "public").mkdir(parents=True)
    upload = uuid.uuid4()
    mine = await write(registry, upload, 0, b"site one's", final=True)
    request, parts, _ = chunk(upload, 0, b"two", final=True)
    theirs = await registry.write(
        SiteRef(2, "site_0002", os.getuid()), request.model_copy(update={"site_id": 2}), parts
    )
    assert theirs.etag != mine.etag and theirs.received == 3  # type: ignore[attr-defined]
    assert (root / "site_0001" / "public" / "f.txt").read_bytes() == b"site one's"
    # The same site, another path: refused, not answered with the first one's reply.
    assert await code(write(registry, upload, 0, b"x", final=True, path="public/g.txt")) is ErrorCode.UPLOAD_UNKNOWN
