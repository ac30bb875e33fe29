"""Site files and logs over the bus, as Director's file manager and log view use them: requests on
`director.files` as the `director` user, replies to a direct reply-to or a named reply queue,
through Director's client (`orchestrator_client`, clients/python).

One deployed site is shared by the module; each test works in a directory of its own in it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import stat
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from support import Running, deploy, eventually, fresh_site_id, reason, served, site_event, write_site

from harness.rabbit import LOCAL_BROKER
from orchestrator.config import Settings
from orchestrator_client import Client
from orchestrator_client.errors import OrchestratorError

SETTINGS = Settings()
FILES = SETTINGS.files_exchange


def site_uid(site_id: int) -> int:
    return SETTINGS.site_uid_base + site_id


@pytest.fixture(scope="module")
async def client(stack: Running) -> AsyncIterator[Client]:
    """Director's file manager with direct reply-to."""
    async with await Client.connect(f"amqp://director:director@127.0.0.1:5672/{stack.vhost}") as files:
        yield files


@pytest.fixture(scope="module")
async def named(stack: Running) -> AsyncIterator[Client]:
    """The same with a named reply queue (director.replies.<name>)."""
    url = f"amqp://director:director@127.0.0.1:5672/{stack.vhost}"
    queue = f"director.replies.test-{uuid.uuid4().hex[:8]}"
    async with await Client.connect(url, reply_queue=queue) as files:
        yield files


TICKING = """#!/bin/sh
echo "boot key=$API_KEY"
(while :; do echo "tick"; sleep 0.3; done) &
exec httpd -f -p "$PORT" -h /site/public
"""
SECRET = "hunter2-files-secret"


@pytest.fixture(scope="module")
async def site(stack: Running) -> int:
    """One deployed dynamic site for the module: busybox httpd serving public/, and a log line
    every 0.3 s (its first one holds an env value, which logs show masked)."""
    site_id = fresh_site_id()
    site_dir = write_site(stack.sites_root, site_id, page=f"files {site_id}")
    (site_dir / "run.sh").write_text(TICKING)
    event = site_event("site.created", site_id, 1, env={"API_KEY": SECRET})
    result = await deploy(stack.director, stack.results, event)
    assert result.type == "site.deployed", result
    return site_id


@pytest.fixture
def home(stack: Running, site: int, request: pytest.FixtureRequest) -> str:
    """A directory of the test's own in the shared site (relative path), made by the site's user."""
    name = f"private/{request.node.name[:60]}"
    path = stack.sites_root / f"site_{site:04d}" / name
    path.mkdir()
    os.chown(path, site_uid(site), site_uid(site))
    return name


def on_disk(stack: Running, site_id: int, relative: str) -> Path:
    return stack.sites_root / f"site_{site_id:04d}" / relative


# --- every operation -------------------------------------------------------------------------------


async def test_every_operation_round_trips(client: Client, stack: Running, site: int, home: str) -> None:
    uid = site_uid(site)
    made = await client.files.mkdir(site, f"{home}/docs")
    assert (made.type, made.mode, made.path) == ("dir", 0o770, f"{home}/docs")
    written = await client.files.write(site, f"{home}/docs/a.txt", b"hello files")
    assert written.received == 11 and written.entry is not None and written.etag
    assert (written.entry.type, written.entry.size, written.entry.mode) == ("file", 11, 0o660)
    disk = on_disk(stack, site, f"{home}/docs/a.txt")
    assert disk.read_bytes() == b"hello files"
    assert (disk.stat().st_uid, disk.stat().st_gid) == (uid, uid)  # the site's, never root's

    status = await client.files.stat(site, f"{home}/docs/a.txt")
    assert status.etag == written.etag and status.entry.size == 11
    data, read = await client.files.read(site, f"{home}/docs/a.txt", offset=6, length=3)
    assert (data, read.eof, read.size, read.etag) == (b"fil", False, 11, written.etag)
    data, read = await client.files.read(site, f"{home}/docs/a.txt", offset=6)
    assert (data, read.eof) == (b"files", True)

    page = await client.files.list(site, f"{home}/docs")
    assert [e.name for e in page.entries] == ["a.txt"] and page.next_cursor is None

    moved = await client.files.rename(site, f"{home}/docs/a.txt", f"{home}/b.txt")
    assert moved.path == f"{home}/b.txt"
    changed = await client.files.chmod(site, f"{home}/b.txt", 0o640)
    assert changed.mode == 0o640 and stat.S_IMODE(on_disk(stack, site, f"{home}/b.txt").stat().st_mode) == 0o640
    # The etag moves with the inode's change time: a rename or chmod changes it too (safe side).
    current = (await client.files.stat(site, f"{home}/b.txt")).etag
    assert current not in (None, status.etag)
    again = await client.files.write(site, f"{home}/b.txt", b"v2", if_match=current)
    assert again.entry is not None and again.entry.mode == 0o640  # a replaced file keeps its mode
    assert again.etag != current

    usage = await client.files.usage(site, home)
    assert (usage.files, usage.dirs, usage.bytes) == (1, 1, 2)
    assert await client.files.delete(site, f"{home}/b.txt") == 1
    await client.files.write(site, f"{home}/docs/deep/er.txt".replace("/deep/er.txt", "/c.txt"), b"c")
    await client.files.mkdir(site, f"{home}/docs/x/y/z", parents=True)
    assert await client.files.delete(site, f"{home}/docs", recursive=True) == 5
    assert not on_disk(stack, site, f"{home}/docs").exists()


async def test_a_named_reply_queue_gets_the_replies_too(named: Client, site: int, home: str) -> None:
    await named.files.write(site, f"{home}/n.txt", b"named")
    assert await named.files.read_all(site, f"{home}/n.txt") == b"named"
    assert [e.name async for e in named.files.list_all(site, home)] == ["n.txt"]


# --- every error code ------------------------------------------------------------------------------


async def refused(request: object) -> str:
    """The code of the OrchestratorError the awaitable raises."""
    with pytest.raises(OrchestratorError) as caught:
        await request  # type: ignore[misc]
    return caught.value.code


async def test_every_refusal_reaches_the_requester_with_its_code(
    client: Client, stack: Running, site: int, home: str
) -> None:
    await client.files.write(site, f"{home}/f.txt", b"12345")
    await client.files.mkdir(site, f"{home}/d")
    await client.files.write(site, f"{home}/d/inner.txt", b"x")
    secret = on_disk(stack, site, f"{home}/root-only.txt")
    secret.write_text("root's")  # made by root, 0600: the site's user may not read it
    secret.chmod(0o600)
    chunk = SETTINGS.files_chunk_bytes

    codes = {
        "site_not_found": await refused(client.files.stat(fresh_site_id(), "")),
        "not_found": await refused(client.files.stat(site, f"{home}/missing")),
        "not_a_directory": await refused(client.files.list(site, f"{home}/f.txt")),
        "is_a_directory": await refused(client.files.read(site, f"{home}/d")),
        "exists": await refused(client.files.mkdir(site, f"{home}/d")),
        "exists (rename)": await refused(client.files.rename(site, f"{home}/f.txt", f"{home}/d/inner.txt")),
        "not_empty": await refused(client.files.delete(site, f"{home}/d")),
        "unsafe_path (..)": await refused(client.files.stat(site, f"{home}/../../etc")),
        "unsafe_path (absolute)": await refused(client.files.read(site, "/etc/passwd")),
        "unsafe_path (a file on the way)": await refused(client.files.stat(site, f"{home}/f.txt/x")),
        "unsafe_path (skeleton)": await refused(client.files.delete(site, "public", recursive=True)),
        "too_large": await refused(client.files.write(site, f"{home}/big", b"x" * (chunk + 1), chunk=chunk + 1)),
        "precondition_failed (if_match)": await refused(
            client.files.write(site, f"{home}/f.txt", b"v", if_match="nope")
        ),
        "precondition_failed (if_none_match)": await refused(
            client.files.write(site, f"{home}/f.txt", b"v", if_none_match=True)
        ),
        "upload_unknown": await refused(
            client.request(
                "files.write",
                {"site_id": site, "path": f"{home}/u", "upload_id": str(uuid.uuid4()), "offset": 5, "data": ""},
            )
        ),
        # Sent as given: the client's own model refuses it before it leaves.
        "invalid_request (setuid)": await refused(
            client.request("files.chmod", {"site_id": site, "path": f"{home}/f.txt", "mode": 0o4755})
        ),
        "invalid_request (schema)": await refused(client.request("files.list", {"site_id": "one"})),
        "invalid_request (cursor)": await refused(client.files.list(site, home, cursor="forged")),
        "io_error": await refused(client.files.read(site, f"{home}/root-only.txt")),
    }
    assert codes == {name: name.split(" ")[0] for name in codes}
    assert on_disk(stack, site, f"{home}/f.txt").read_bytes() == b"12345"  # nothing refused changed it
    assert not any(p.name.startswith(".~orchestrator") for p in on_disk(stack, site, home).iterdir())


async def test_uploads_beyond_the_per_site_limit_are_busy(client: Client, site: int, home: str) -> None:
    def chunk(upload_id: str, name: str) -> dict[str, object]:
        return {"site_id": site, "path": f"{home}/{name}", "upload_id": upload_id, "offset": 0, "data": "eA=="}

    ids = [str(uuid.uuid4()) for _ in range(SETTINGS.files_max_uploads_per_site + 1)]
    for index, upload_id in enumerate(ids[:-1]):
        assert (await client.request("files.write", chunk(upload_id, f"u{index}")))["received"] == 1
    assert await refused(client.request("files.write", chunk(ids[-1], "last"))) == "busy"
    for index, upload_id in enumerate(ids[:-1]):  # finishing one frees its slot
        body = {**chunk(upload_id, f"u{index}"), "offset": 1, "data": "", "final": True}
        assert (await client.request("files.write", body))["received"] == 1
    assert (await client.request("files.write", {**chunk(ids[-1], "last"), "final": True}))["received"] == 1


async def test_chunks_arriving_out_of_order_are_written_in_order(client: Client, site: int, home: str) -> None:
    upload_id, pieces = str(uuid.uuid4()), [b"aaa", b"bbb", b"ccc"]

    def chunk(index: int) -> dict[str, object]:
        return {
            "site_id": site, "path": f"{home}/o.txt", "upload_id": upload_id, "offset": 3 * index,
            "data": base64.b64encode(pieces[index]).decode(), "final": index == 2,
        }  # fmt: skip

    first = await client.request("files.write", chunk(0))
    later = asyncio.gather(client.request("files.write", chunk(2)), client.request("files.write", chunk(1)))
    final, second = await later
    assert (first["received"], second["received"], final["received"]) == (3, 6, 9)
    assert await client.files.read_all(site, f"{home}/o.txt") == b"aaabbbccc"
    # The final chunk redelivered (a crash before the ack): answered again, nothing rewritten.
    assert (await client.request("files.write", chunk(2)))["etag"] == final["etag"]


async def test_an_abandoned_upload_expires_and_leaves_nothing(
    client: Client, stack: Running, site: int, home: str
) -> None:
    upload_id = str(uuid.uuid4())
    body = {"site_id": site, "path": f"{home}/gone.txt", "upload_id": upload_id, "offset": 0, "data": "eA=="}
    await client.request("files.write", body)
    folder = on_disk(stack, site, home)
    assert [p.name for p in folder.iterdir()] == [f".~orchestrator-upload-{uuid.UUID(upload_id).hex}"]
    assert (await client.files.list(site, home)).entries == []  # an upload in progress is not listed

    await eventually(lambda: not any(folder.iterdir()), timeout=15)  # FILES_UPLOAD_IDLE_SECONDS=3 in tests
    assert await refused(client.request("files.write", {**body, "offset": 1, "final": True})) == "upload_unknown"


async def raw(
    stack: Running,
    client: Client,
    op: str,
    body: bytes,
    *,
    reply_to: str | None,
    user_id: str | None = "director",
    correlation_id: str | None = None,
) -> tuple[str, asyncio.Future[dict[str, object]]]:
    """Publish a request as given (as the director user), the reply (if any) to `client`'s queue;
    its message id and a future of its reply."""
    correlation_id = correlation_id or uuid.uuid4().hex
    await client._requests._start()  # its reply queue declared and consumed: a fresh client has none yet
    future: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
    client._requests._pending[correlation_id] = future
    channel = await client.connection.channel()
    exchange = await channel.get_exchange(FILES, ensure=False)
    message_id = str(uuid.uuid4())
    message = aio_pika.Message(
        body, message_id=message_id, correlation_id=correlation_id, reply_to=reply_to, user_id=user_id
    )
    await exchange.publish(message, op)
    await channel.close()
    return message_id, future


async def test_requests_nobody_may_be_answered_for_are_dead_lettered_without_a_reply(
    named: Client, stack: Running, site: int
) -> None:
    await stack.dead_letters.take()
    trap = f"observer.trap-{uuid.uuid4().hex[:8]}"  # another user's queue, not a reply queue
    observer = await aio_pika.connect(LOCAL_BROKER.url("observer", stack.vhost))
    channel = await observer.channel()
    trapped = await channel.declare_queue(trap, exclusive=True)
    body = json.dumps({"site_id": site, "path": ""}).encode()
    queue = named.reply_to
    assert queue is not None

    stranger, stranger_reply = await raw(stack, named, "files.stat", body, reply_to=queue, user_id=None)
    no_reply_to, _ = await raw(stack, named, "files.stat", body, reply_to=None)
    elsewhere, _ = await raw(stack, named, "files.stat", body, reply_to=trap)
    garbage, garbage_reply = await raw(stack, named, "files.stat", b"{not json", reply_to=queue)

    letters = await stack.dead_letters.collect({stranger, no_reply_to, elsewhere, garbage})
    assert {i: reason(m) for i, m in letters.items()} == {
        stranger: "unauthenticated",
        no_reply_to: "invalid_request",
        elsewhere: "invalid_request",
        garbage: "invalid_request",
    }
    # Director hears about its own malformed request; a stranger hears nothing, and nothing is
    # ever published into a queue that is not a reply queue.
    async with asyncio.timeout(10):
        assert (await garbage_reply)["error"]["code"] == "invalid_request"  # type: ignore[index]
    assert not stranger_reply.done()
    assert await trapped.get(fail=False) is None
    await observer.close()


# --- archives --------------------------------------------------------------------------------------


async def test_an_archive_is_a_zip_of_the_directory_streamed_in_chunks(
    client: Client, stack: Running, site: int, home: str
) -> None:
    folder = on_disk(stack, site, home)
    (folder / "sub").mkdir()
    (folder / "a.txt").write_bytes(b"a" * 1000)
    (folder / "sub" / "b.bin").write_bytes(os.urandom(3 * SETTINGS.files_chunk_bytes // 2))  # > one chunk
    (folder / "link").symlink_to("/etc/passwd")
    chunks = [chunk async for chunk in client.files.archive(site, home)]  # the client checks seq and sha256
    assert len(chunks) >= 2
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert sorted(archive.namelist()) == ["a.txt", "link", "sub/", "sub/b.bin"]
    assert archive.read("sub/b.bin") == (folder / "sub" / "b.bin").read_bytes()
    assert archive.read("link") == b"/etc/passwd"  # the link's text, never /etc/passwd itself
    assert stat.S_ISLNK(archive.getinfo("link").external_attr >> 16)
    assert await refused(_drain(client.files.archive(site, f"{home}/a.txt"))) == "not_a_directory"


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    async for _ in chunks:
        pass


# --- large directories and files -------------------------------------------------------------------


async def test_a_directory_of_100000_entries_pages_through_and_walks_stop_at_their_budget(
    client: Client, stack: Running, site: int, home: str
) -> None:
    folder = on_disk(stack, site, f"{home}/many")
    folder.mkdir()
    names = [f"f{i:06d}" for i in range(100_000)]
    # Entries made as hard links to two files: a tenth of the time of 100,000 inodes on this disk
    # (20 s under load), and the listing only reads names; ext4 allows 65,000 links to one inode.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for source in names[::50_000]:
            os.close(os.open(source, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        for index, name in enumerate(names):
            if index % 50_000:
                os.link(names[index - index % 50_000], name, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)

    started = time.monotonic()
    seen = [entry.name async for entry in client.files.list_all(site, f"{home}/many", limit=1000)]
    took = time.monotonic() - started
    assert seen == names  # every entry once, sorted by name, across 100 pages
    print(f"listed 100,000 entries in 100 pages in {took:.1f} s")
    # A walk of the whole tree stops at the entry budget (50,000 in the tests) instead of running
    # on (archives and deletes share it: tests/unit/test_files_ops.py).
    assert await refused(client.files.usage(site, home)) == "too_large"


def reset_peak(pid: int) -> None:
    """VmHWM := VmRSS: the peak from here on."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def test_100_mib_up_and_down_with_the_same_sha256_and_bounded_memory(
    client: Client, stack: Running, site: int, home: str
) -> None:
    assert stack.orchestrator.proc is not None
    pid = stack.orchestrator.proc.pid
    data = os.urandom(100 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    reset_peak(pid)
    baseline = rss_kb(pid, "VmRSS")

    started = time.monotonic()
    written = await client.files.write(site, f"{home}/big.bin", data)
    uploaded = time.monotonic() - started
    print(
        "after upload: peak", (rss_kb(pid, "VmHWM") - baseline) / 1024, "now", (rss_kb(pid, "VmRSS") - baseline) / 1024
    )
    assert written.received == len(data) and written.entry is not None and written.entry.size == len(data)
    assert hashlib.sha256(on_disk(stack, site, f"{home}/big.bin").read_bytes()).hexdigest() == digest

    started = time.monotonic()
    downloaded = hashlib.sha256()
    async for piece in client.files.download(site, f"{home}/big.bin"):
        downloaded.update(piece)
    took = time.monotonic() - started
    assert downloaded.hexdigest() == digest
    growth_mb = (rss_kb(pid, "VmHWM") - baseline) / 1024
    print(f"100 MiB: upload {uploaded:.1f} s, download {took:.1f} s, orchestrator RSS growth {growth_mb:.1f} MB")
    assert growth_mb < 30


# --- through Traefik --------------------------------------------------------------------------------


async def test_a_page_written_over_the_bus_is_served_through_traefik(client: Client, stack: Running) -> None:
    site_id, host = fresh_site_id(), f"files{fresh_site_id()}.example.com"
    write_site(stack.sites_root, site_id, page="before", run_sh=False)
    event = site_event("site.created", site_id, 1, kind="static", domains=[host])
    assert (await deploy(stack.director, stack.results, event)).type == "site.deployed"
    page = f"<h1>written over the bus {uuid.uuid4().hex}</h1>"
    written = await client.files.write(site_id, "public/index.html", page.encode())
    assert written.entry is not None and written.entry.mode == 0o644  # the replaced page's mode, kept
    await served(host, page)


# --- logs --------------------------------------------------------------------------------------------


async def test_logs_tail_shows_the_sites_lines_with_env_values_masked(client: Client, site: int) -> None:
    lines = await client.logs.tail(site, 50)
    assert 0 < len(lines) <= 50
    assert [line.ts for line in lines] == sorted(line.ts for line in lines)
    assert all(line.task for line in lines)
    assert not any(SECRET in line.text for line in lines)
    everything = await client.logs.tail(site, 1000)
    assert any(line.text == "boot key=***" for line in everything)


async def test_a_follow_keeps_going_across_a_restart_and_stops_when_asked(
    client: Client, stack: Running, site: int
) -> None:
    async with client.logs.follow(site, lines=3) as follow:
        first = await follow.next(10)
        assert first is not None and first.seq == 0
        before = await follow.next(10)
        assert before is not None and before.lines and before.seq == 1
        old_tasks = {line.task for line in first.lines + before.lines}

        restart = site_event("site.restart_requested", site, 1)
        assert (await deploy(stack.director, stack.results, restart)).type == "site.deployed"
        seq, new_task = before.seq, None
        deadline = time.monotonic() + 30
        while new_task is None:
            update = await follow.next(max(0.1, deadline - time.monotonic()))
            assert update is not None and update.seq == seq + 1  # in order, none lost
            seq = update.seq
            new_task = next((line.task for line in update.lines if line.task not in old_tasks), None)
        assert not any(SECRET in line.text for line in update.lines)

        assert await follow.stop() is True
        while (update := await follow.next(10)) is not None and not update.last:
            pass
        assert follow.ended is not None and follow.ended.reason == "stopped by logs.stop"
    assert await follow.stop() is False  # ended already


async def test_a_follow_ends_when_its_reply_queue_is_gone(stack: Running, site: int) -> None:
    url = f"amqp://director:director@127.0.0.1:5672/{stack.vhost}"
    named = await Client.connect(url, reply_queue=f"director.replies.gone-{uuid.uuid4().hex[:8]}")
    follow = named.logs.follow(site)
    await follow.__aenter__()
    assert await follow.next(10) is not None
    await named.close()  # the exclusive reply queue goes with the connection

    def ended() -> bool:
        return any(
            line.get("msg") == "log follow ended" and line.get("stream_id") == str(follow.stream_id)
            for line in stack.orchestrator.log_lines()
        )

    await eventually(ended, timeout=15, interval=0.2)


# --- deletion, and deploys meanwhile --------------------------------------------------------------------


async def test_deleting_a_site_ends_its_follows_and_uploads_and_its_files_are_gone(
    client: Client, stack: Running
) -> None:
    site_id = fresh_site_id()
    write_site(stack.sites_root, site_id, page="doomed")
    assert (
        await deploy(stack.director, stack.results, site_event("site.created", site_id, 1, serving=False))
    ).type == ("site.deployed")
    upload = {"site_id": site_id, "path": "private/up.bin", "upload_id": str(uuid.uuid4()), "offset": 0, "data": "eA=="}
    await client.request("files.write", upload)
    async with client.logs.follow(site_id) as follow:
        assert await follow.next(10) is not None
        removed = await deploy(stack.director, stack.results, site_event("site.deleted", site_id, 2))
        assert removed.type == "site.removed"
        while (update := await follow.next(10)) is not None and not update.last:
            pass
        assert follow.ended is not None and follow.ended.reason == f"site {site_id} was deleted"

    trashed = [p for p in (stack.sites_root / ".trash").iterdir() if p.name.startswith(f"site_{site_id:04d}-")]
    assert len(trashed) == 1
    assert not list(trashed[0].rglob(".~orchestrator-upload-*"))  # aborted before the directory moved
    assert await refused(client.files.stat(site_id, "")) == "site_not_found"
    assert await refused(client.request("files.write", {**upload, "offset": 1, "final": True})) == "site_not_found"
    assert await refused(client.logs.tail(site_id)) == "site_not_found"


async def test_file_requests_are_answered_while_a_burst_of_deploys_runs(
    client: Client, stack: Running, site: int, home: str
) -> None:
    await client.files.write(site, f"{home}/f.txt", b"steady")
    burst = [fresh_site_id() for _ in range(5)]
    events = []
    for site_id in burst:
        write_site(stack.sites_root, site_id, page=f"burst {site_id}")
        events.append(site_event("site.created", site_id, 1))
    deploys = asyncio.gather(*(deploy(stack.director, stack.results, event) for event in events))
    latencies = []
    while not deploys.done():
        started = time.monotonic()
        data, _ = await client.files.read(site, f"{home}/f.txt")
        latencies.append(time.monotonic() - started)
        assert data == b"steady"
    assert all(result.type == "site.deployed" for result in await deploys)
    latencies.sort()
    print(f"{len(latencies)} reads during the burst: median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms")  # fmt: skip
    assert len(latencies) > 20 and latencies[-1] < 2.0
