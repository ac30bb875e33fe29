"""The file operations and the confined walk on a scratch directory, with openat2 and with the
component-by-component walk (both must refuse the same things)."""

from __future__ import annotations

import io
import os
import stat
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import FileRefused
from orchestrator.files import confined, listing, operations, paths, walks
from orchestrator.files.archive import ZipStream
from orchestrator.files.walks import Budget
from orchestrator_contract.codes import ErrorCode


@pytest.fixture(params=["openat2", "walk"], autouse=True)
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "openat2" and not confined.USE_OPENAT2:
        pytest.skip("the kernel has no openat2")
    monkeypatch.setattr(confined, "USE_OPENAT2", request.param == "openat2")
    return str(request.param)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """What a site must never reach: a directory beside it."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_text("outside")
    return path


@pytest.fixture
def site(tmp_path: Path, outside: Path) -> Path:
    path = tmp_path / "site"
    for sub in ("public", "private"):
        (path / sub).mkdir(parents=True)
    (path / "public" / "index.html").write_text("hello")
    (path / "private" / "out").symlink_to(outside)
    (path / "private" / "secret-link").symlink_to(outside / "secret")
    return path


@pytest.fixture
def fd(site: Path) -> Iterator[int]:
    descriptor = os.open(site, confined.DIR_FLAGS)
    yield descriptor
    os.close(descriptor)


def budget(entries: int = 10_000, seconds: float = 30) -> Budget:
    return Budget(seconds, entries)


def code(call: object, *args: object) -> ErrorCode:
    with pytest.raises(FileRefused) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.code


# --- confinement -------------------------------------------------------------------------------------


def test_a_link_on_the_way_is_unsafe_and_a_link_at_the_end_is_not_a_directory(fd: int) -> None:
    assert code(confined.open_dir, fd, ("private", "out", "x")) is ErrorCode.UNSAFE_PATH
    assert code(confined.open_dir, fd, ("private", "out")) is ErrorCode.NOT_A_DIRECTORY
    assert code(confined.open_dir, fd, ("public", "index.html", "x")) is ErrorCode.UNSAFE_PATH
    assert code(confined.open_dir, fd, ("public", "index.html")) is ErrorCode.NOT_A_DIRECTORY
    assert code(confined.open_dir, fd, ("public", "missing", "x")) is ErrorCode.NOT_FOUND
    os.close(confined.open_dir(fd, ("public",)))


def test_a_fifo_is_refused_without_blocking(site: Path, fd: int) -> None:
    os.mkfifo(site / "private" / "fifo")
    started = time.monotonic()
    assert code(operations.read_range, fd, ("private", "fifo"), 0, 10) is ErrorCode.NOT_REGULAR
    assert time.monotonic() - started < 10  # an open that blocked would wait for a writer forever


def test_reads_never_follow_a_link(fd: int) -> None:
    assert code(operations.read_range, fd, ("private", "secret-link"), 0, 10) is ErrorCode.NOT_REGULAR
    assert code(operations.read_range, fd, ("private", "out", "secret"), 0, 10) is ErrorCode.UNSAFE_PATH


def test_a_directory_swapped_for_a_link_in_a_loop_never_lets_a_read_out(site: Path, fd: int) -> None:
    """The race, in process: a thread flips private/d between a directory and a link to outside."""
    d = site / "private" / "d"
    d.mkdir()
    (d / "secret").write_text("inside")
    stop = threading.Event()
    flips = 0

    def flip() -> None:
        nonlocal flips
        while not stop.is_set():
            os.rename(d, site / "private" / "real")
            os.symlink(site.parent / "outside", d)
            os.unlink(d)
            os.rename(site / "private" / "real", d)
            flips += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    seen: set[bytes] = set()
    try:
        started = time.monotonic()  # half a second of reads, and 50 flips however busy the machine
        while (flips <= 50 or time.monotonic() < started + 0.5) and time.monotonic() < started + 10:
            try:
                seen.add(operations.read_range(fd, ("private", "d", "secret"), 0, 100).data)
            except FileRefused as exc:
                assert exc.code in (ErrorCode.UNSAFE_PATH, ErrorCode.NOT_FOUND)
    finally:
        stop.set()
        flipper.join()
    assert flips > 50
    assert seen <= {b"inside"}


# --- list, stat, read ----------------------------------------------------------------------------


def test_a_listing_pages_in_name_order_without_temporaries(site: Path, fd: int) -> None:
    folder = site / "private" / "many"
    folder.mkdir()
    names = sorted(f"f{i:04d}" for i in range(2500))
    for name in reversed(names):
        (folder / name).touch()
    (folder / paths.temp_name(uuid.uuid4())).touch()
    seen, cursor, pages = [], None, 0
    while True:
        page = listing.list_dir(fd, ("private", "many"), paths.decode_cursor(cursor), 1000, budget())
        seen += [e.name for e in page.entries]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == names and pages == 3


def pages_of(fd: int, parts: tuple[str, ...], cache: listing.SortedNames | None, site_id: int = 1) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        cached = (cache, site_id) if cache is not None else None
        page = listing.list_dir(fd, parts, paths.decode_cursor(cursor), 1000, budget(), (), None, cached)
        seen += [e.name for e in page.entries]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a directory was scanned."""
    counted = [0]
    scan = listing._names

    def counting(*args: object, **kwargs: object) -> Iterator[str]:
        counted[0] += 1
        return scan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(listing, "_names", counting)
    return counted


def test_paging_a_big_directory_scans_it_once_with_the_cache(site: Path, fd: int, scans: list[int]) -> None:
    folder = site / "private" / "many"
    folder.mkdir()
    names = sorted(f"f{i:04d}" for i in range(2500))
    for name in names:
        (folder / name).touch()
    (folder / paths.temp_name(uuid.uuid4())).touch()
    cache = listing.SortedNames(settle_seconds=0)
    assert pages_of(fd, ("private", "many"), cache) == names and scans[0] == 1
    assert pages_of(fd, ("private", "many"), None) == names and scans[0] == 4  # a scan a page
    assert pages_of(fd, ("private", "many"), cache, site_id=2) == names and scans[0] == 5  # not another site's


def test_a_change_between_pages_shows_on_the_next_page(site: Path, fd: int) -> None:
    folder = site / "private" / "many"
    folder.mkdir()
    for i in range(1500):
        (folder / f"f{i:04d}").touch()
    cache = listing.SortedNames(settle_seconds=0)
    first = listing.list_dir(fd, ("private", "many"), None, 1000, budget(), (), None, (cache, 1))
    time.sleep(0.05)  # past the file-time clock's tick: the change moves the directory's times
    (folder / "f1499").unlink()
    (folder / "g-new").touch()
    cursor = paths.decode_cursor(first.next_cursor)
    rest = listing.list_dir(fd, ("private", "many"), cursor, 1000, budget(), (), None, (cache, 1))
    assert [e.name for e in rest.entries][-2:] == ["f1498", "g-new"]


def test_a_directory_changed_within_the_settling_time_is_not_kept(site: Path, fd: int, scans: list[int]) -> None:
    folder = site / "private" / "many"
    folder.mkdir()
    for i in range(1500):
        (folder / f"f{i:04d}").touch()
    cache = listing.SortedNames(settle_seconds=60)  # its times are seconds old at most
    assert len(pages_of(fd, ("private", "many"), cache)) == 1500 and scans[0] == 2


def test_the_cache_holds_a_bounded_number_of_names(site: Path, fd: int, scans: list[int]) -> None:
    for folder in ("a", "b"):
        (site / "private" / folder).mkdir()
        for i in range(1200):
            (site / "private" / folder / f"f{i:04d}").touch()
    cache = listing.SortedNames(max_names=2000, settle_seconds=0)
    assert len(pages_of(fd, ("private", "a"), cache)) == 1200 and scans[0] == 1
    assert len(pages_of(fd, ("private", "b"), cache)) == 1200 and scans[0] == 2  # "a" made room
    assert len(pages_of(fd, ("private", "a"), cache)) == 1200 and scans[0] == 3
    # Too big to hold: each page's attempt stops past the bound, then a page's scan (two pages: 4).
    small = listing.SortedNames(max_names=1000, settle_seconds=0)
    assert pages_of(fd, ("private", "a"), small) == sorted(f"f{i:04d}" for i in range(1200)) and scans[0] == 7


def test_a_listing_shows_links_as_links(fd: int, outside: Path) -> None:
    entries = {e.name: e for e in listing.list_dir(fd, ("private",), None, 10, budget()).entries}
    assert (entries["out"].type, entries["out"].target) == ("symlink", str(outside))
    assert (entries["secret-link"].type, entries["secret-link"].target) == ("symlink", str(outside / "secret"))


def test_a_stale_upload_temporary_is_removed_when_its_directory_is_listed(site: Path, fd: int) -> None:
    old, live = paths.temp_name(uuid.uuid4()), uuid.uuid4()
    for name in (old, paths.temp_name(live)):
        (site / "public" / name).touch()
        os.utime(site / "public" / name, (0, 0))
    listing.list_dir(fd, ("public",), None, 10, budget(), live_uploads={live}, stale_seconds=60)
    assert not (site / "public" / old).exists()
    assert (site / "public" / paths.temp_name(live)).exists()  # its upload still runs


def test_a_read_returns_a_range_and_says_where_the_file_ends(fd: int) -> None:
    chunk = operations.read_range(fd, ("public", "index.html"), 1, 3)
    assert (chunk.data, chunk.size, chunk.eof) == (b"ell", 5, False)
    chunk = operations.read_range(fd, ("public", "index.html"), 3, 100)
    assert (chunk.data, chunk.eof) == (b"lo", True)
    assert operations.read_range(fd, ("public", "index.html"), 99, 10).data == b""
    assert code(operations.read_range, fd, ("public",), 0, 1) is ErrorCode.IS_A_DIRECTORY


def test_stat_of_a_file_has_an_etag_and_of_a_link_is_the_link(fd: int) -> None:
    status = operations.stat_path(fd, ("public", "index.html"))
    assert status.entry.type == "file" and status.etag
    link = operations.stat_path(fd, ("private", "out"))
    assert link.entry.type == "symlink" and link.etag is None
    assert operations.stat_path(fd, ()).entry.type == "dir"


# --- mkdir, rename, delete, chmod -------------------------------------------------------------------------


def test_mkdir_makes_private_directories_and_parents_on_request(site: Path, fd: int) -> None:
    made = operations.make_dir(fd, ("public", "docs"), False, None).entry
    assert (made.type, made.mode) == ("dir", 0o770)
    assert code(operations.make_dir, fd, ("public", "docs"), False, None) is ErrorCode.EXISTS
    assert code(operations.make_dir, fd, ("public", "a", "b"), False, None) is ErrorCode.NOT_FOUND
    deep = operations.make_dir(fd, ("public", "a", "b", "c"), True, 0o750).entry
    assert deep.mode == 0o750 and stat.S_IMODE((site / "public" / "a").stat().st_mode) == 0o770
    assert operations.make_dir(fd, ("public", "a", "b", "c"), True, None).entry.path == "public/a/b/c"
    assert code(operations.make_dir, fd, ("private", "out", "x"), True, None) is ErrorCode.UNSAFE_PATH
    assert code(operations.make_dir, fd, ("public", "index.html"), True, None) is ErrorCode.EXISTS


def test_rename_replaces_only_when_asked_and_never_the_skeleton(site: Path, fd: int) -> None:
    (site / "public" / "a").write_text("a")
    assert code(operations.rename, fd, ("public", "a"), ("public", "index.html"), False) is ErrorCode.EXISTS
    assert operations.rename(fd, ("public", "a"), ("public", "index.html"), True).entry.size == 1
    assert (site / "public" / "index.html").read_text() == "a"
    assert code(operations.rename, fd, ("public",), ("private", "p"), False) is ErrorCode.UNSAFE_PATH
    assert code(operations.rename, fd, ("public", "index.html"), ("public",), True) is ErrorCode.UNSAFE_PATH
    (site / "public" / "d").mkdir()
    assert code(operations.rename, fd, ("public", "d"), ("public", "d", "e"), False) is ErrorCode.INVALID_REQUEST
    assert code(operations.rename, fd, ("public", "nope"), ("public", "x"), False) is ErrorCode.NOT_FOUND
    # A link is moved as the link it is.
    operations.rename(fd, ("private", "out"), ("public", "out"), False)
    assert (site / "public" / "out").is_symlink()


def test_a_recursive_delete_removes_links_never_what_they_point_at(site: Path, outside: Path, fd: int) -> None:
    tree = site / "private" / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_text("f")
    (tree / "link").symlink_to(outside)
    assert code(operations.delete, fd, ("private", "tree"), False, budget()) is ErrorCode.NOT_EMPTY
    assert operations.delete(fd, ("private", "tree"), True, budget()).deleted == 5
    assert not tree.exists() and (outside / "secret").read_text() == "outside"
    assert operations.delete(fd, ("private", "out"), True, budget()).deleted == 1  # the link only
    assert (outside / "secret").exists()
    for skeleton in ((), ("public",), ("private",)):
        assert code(operations.delete, fd, skeleton, True, budget()) is ErrorCode.UNSAFE_PATH


def test_a_delete_past_its_budget_stops_with_too_large(site: Path, fd: int) -> None:
    tree = site / "private" / "wide"
    tree.mkdir()
    for i in range(50):
        (tree / str(i)).touch()
    assert code(operations.delete, fd, ("private", "wide"), True, budget(entries=10)) is ErrorCode.TOO_LARGE


def test_chmod_sets_permission_bits_of_files_and_directories_only(site: Path, fd: int) -> None:
    index = site / "public" / "index.html"
    os.chmod(index, 0o4755)
    assert operations.chmod(fd, ("public", "index.html"), 0o640).entry.mode == 0o640
    assert stat.S_IMODE(index.stat().st_mode) == 0o640  # the setuid bit went too
    assert operations.chmod(fd, ("public",), 0o750).entry.mode == 0o750
    assert code(operations.chmod, fd, ("private", "secret-link"), 0o777) is ErrorCode.UNSAFE_PATH
    os.mkfifo(site / "private" / "fifo")
    assert code(operations.chmod, fd, ("private", "fifo"), 0o777) is ErrorCode.NOT_REGULAR
    assert stat.S_IMODE(Path(os.readlink(site / "private" / "secret-link")).stat().st_mode) != 0o777


def test_usage_counts_files_once_and_stops_at_its_budget(site: Path, fd: int) -> None:
    (site / "private" / "big").write_bytes(b"x" * 1000)
    os.link(site / "private" / "big", site / "private" / "big-again")
    usage = walks.usage(fd, (), budget())
    assert (usage.files, usage.dirs) == (3, 2)
    assert usage.bytes == 5 + 1000 + len(os.readlink(site / "private" / "out")) + len(
        os.readlink(site / "private" / "secret-link")
    )
    assert code(walks.usage, fd, (), budget(entries=2)) is ErrorCode.TOO_LARGE
    assert code(walks.usage, fd, ("private", "out"), budget()) is ErrorCode.NOT_A_DIRECTORY


def test_a_budget_also_runs_out_of_time() -> None:
    spent = Budget(0.0, 10**9)
    spent.started -= 1
    with pytest.raises(FileRefused, match="stopped after"):
        for _ in range(walks.CLOCK_EVERY):
            spent.tick()


# --- archives -------------------------------------------------------------------------------------------


def _zip(fd: int, parts: tuple[str, ...], chunk: int = 4096, most: int = 1 << 30, entries: int = 1000) -> list[bytes]:
    stream = ZipStream(fd, parts, chunk, most, budget(entries=entries))
    try:
        chunks = []
        while (piece := stream.next_chunk()) is not None:
            chunks.append(piece)
        return chunks
    finally:
        stream.close()


def test_an_archive_streams_a_zip_a_chunk_at_a_time(site: Path, fd: int) -> None:
    payload = os.urandom(20_000)
    (site / "public" / "sub").mkdir()
    (site / "public" / "sub" / "data.bin").write_bytes(payload)
    os.mkfifo(site / "public" / "fifo")
    (site / "public" / paths.temp_name(uuid.uuid4())).touch()
    chunks = _zip(fd, ("public",))
    assert len(chunks) > 2 and all(len(c) <= 4096 for c in chunks)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["index.html", "sub/", "sub/data.bin"]  # no FIFO, no temporaries
    assert archive.read("sub/data.bin") == payload


def test_an_archive_keeps_links_as_links(fd: int) -> None:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(_zip(fd, ("private",)))))
    info = archive.getinfo("out")
    assert stat.S_ISLNK(info.external_attr >> 16) and archive.read("out").endswith(b"outside")
    assert "out/secret" not in archive.namelist()


def test_an_archive_stops_at_its_size_or_entry_budget(site: Path, fd: int) -> None:
    (site / "public" / "noise").write_bytes(os.urandom(100_000))
    assert code(_zip, fd, ("public",), 4096, 50_000) is ErrorCode.TOO_LARGE
    assert code(_zip, fd, ("public",), 4096, 1 << 30, 1) is ErrorCode.TOO_LARGE


def test_waiting_for_the_requester_does_not_count_against_an_archives_time(site: Path, fd: int) -> None:
    (site / "public" / "noise").write_bytes(os.urandom(50_000))
    stream = ZipStream(fd, ("public",), 4096, 1 << 30, Budget(0.2, 1000))
    try:
        assert stream.next_chunk() is not None
        time.sleep(0.3)  # the requester is slow
        while stream.next_chunk() is not None:
            pass
    finally:
        stream.close()


def test_a_sparse_file_counts_by_its_size_before_a_byte_is_read(site: Path, fd: int) -> None:
    with (site / "private" / "z").open("wb") as file:
        file.truncate(1 << 40)  # a terabyte of holes: 229:1 as zeros, minutes of CPU to read
    started = time.process_time()
    assert code(_zip, fd, ("private",), 4096, 1 << 30) is ErrorCode.TOO_LARGE
    assert time.process_time() - started < 1


def test_an_archive_looks_at_the_clock_after_every_piece_it_reads(site: Path, fd: int) -> None:
    (site / "public" / "big").write_bytes(bytes(4 << 20))  # one file: no entry tick on the way
    stream = ZipStream(fd, ("public",), 1 << 30, 1 << 30, Budget(0.0, 1000))
    try:
        with pytest.raises(FileRefused) as refused:
            stream.next_chunk()
        assert refused.value.code is ErrorCode.TOO_LARGE and "FILES_WALK_MAX_SECONDS" in refused.value.message
    finally:
        stream.close()
        stream.close()  # twice is nothing


def test_an_archive_closed_while_its_piece_is_made_in_another_thread_stops_there(site: Path, fd: int) -> None:
    """A stream cancelled while a file thread makes its next piece closes it from another thread
    (the old code: "generator already executing", and a descriptor closed under the walk)."""
    with (site / "public" / "big").open("wb") as file:
        file.truncate(512 << 20)  # half a second of zeros to read and compress
    stream = ZipStream(fd, ("public",), 1 << 30, 1 << 30, budget())
    outcome: list[object] = []
    maker = threading.Thread(target=lambda: outcome.append(code(stream.next_chunk)))
    maker.start()
    time.sleep(0.02)
    stream.close()
    maker.join(10)
    assert outcome == [ErrorCode.IO_ERROR]
    assert code(stream.next_chunk) is ErrorCode.IO_ERROR


def test_archive_names_carry_no_windows_separator_and_link_texts_their_bytes(site: Path, fd: int) -> None:
    (site / "public" / "..\\..\\evil:stream").write_text("x")
    os.symlink(b"\xff\xfe not utf-8", os.fsencode(site / "public" / "odd"))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(_zip(fd, ("public",)))))
    assert sorted(archive.namelist()) == [".._.._evil_stream", "index.html", "odd"]
    assert archive.read("odd") == b"\xff\xfe not utf-8"


def test_a_listing_page_stops_before_its_reply_grows_past_its_bytes(site: Path, fd: int) -> None:
    """Links with 4,095-byte targets of control characters (six bytes each in JSON): a page holds
    fewer than `limit` of them, cut and marked; the next page goes on where it stopped."""
    target = "\x01" * 4095
    for i in range(40):
        os.symlink(target, site / "private" / f"l{i:02d}")
    os.symlink(b"/\xff", os.fsencode(site / "private" / "odd"))
    seen, cursor, pages = [], None, 0
    while True:
        page = listing.list_dir(fd, ("private",), cursor, 200, budget(), reply_bytes=64 * 1024)
        assert len(page.model_dump_json()) <= 64 * 1024
        seen += page.entries
        pages += 1
        if page.next_cursor is None:
            break
        cursor = paths.decode_cursor(page.next_cursor)
    assert pages > 1 and [e.name for e in seen] == [f"l{i:02d}" for i in range(40)] + ["odd", "out", "secret-link"]
    links = {e.name: e for e in seen}
    assert links["l00"].target == "\x01" * 1024 and links["l00"].target_truncated
    assert links["odd"].target == "/\ufffd" and links["odd"].target_truncated
    assert links["out"].target is not None and not links["out"].target_truncated


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_a_thread_acts_as_a_site_whose_uid_is_past_two_to_the_31(site: Path, fd: int) -> None:
    """A site id past 1,147,483,647 above the default uid base: setfsuid's unsigned uid read as
    signed made every file operation of such a site fail."""
    uid = 1_000_000_000 + 1_200_000_000
    os.chown(site / "public", uid, uid)
    made: list[int] = []

    def act() -> None:
        with confined.acting_as(uid, uid):
            made.append(operations.make_dir(fd, ("public", "mine"), False, None).entry.mode)

    thread = threading.Thread(target=act)
    thread.start()
    thread.join()
    assert made and (site / "public" / "mine").stat().st_uid == uid
