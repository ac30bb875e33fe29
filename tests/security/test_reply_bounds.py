"""A site that makes the orchestrator's replies huge or its streams costly (round four): links with
4,095-byte targets of control characters (six bytes each in JSON) and one that is not UTF-8, 200
log lines of 16 KiB of them, a sparse terabyte to archive, and a dozen streams asked for at once.
Every request gets an answer below the broker's message size limit (a larger one would close the
channel that carries it, and lose what else was in flight there), and another tenant's requests
and its log follow are answered throughout."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import Running, deploy, fresh_site_id, site_event, write_site

from orchestrator.config import Settings
from orchestrator_client import Client
from orchestrator_client.errors import OrchestratorError

SETTINGS = Settings()
LINKS = 200
LINES = 200
# 200 lines of 16,000 \x01 (Docker splits lines past 16 KiB), printed before the site serves.
LOUD = r"""#!/bin/sh
i=0
while [ $i -lt 200 ]; do head -c 16000 /dev/zero | tr '\0' '\1'; echo; i=$((i+1)); done
exec httpd -f -p "$PORT" -h /site/public
"""


def owned(path: Path, site_id: int) -> None:
    os.lchown(path, SETTINGS.site_uid_base + site_id, SETTINGS.site_uid_base + site_id)


@pytest.fixture(scope="module")
async def client(stack: Running) -> AsyncIterator[Client]:
    async with await Client.connect(f"amqp://director:director@127.0.0.1:5672/{stack.vhost}") as files:
        yield files


@pytest.fixture(scope="module")
async def loud(stack: Running) -> int:
    """A serving site whose log holds 200 lines of 16 KiB of control characters."""
    site_id = fresh_site_id()
    site_dir = write_site(stack.sites_root, site_id, page="loud")
    (site_dir / "run.sh").write_text(LOUD)
    result = await deploy(stack.director, stack.results, site_event("site.created", site_id, 1))
    assert result.type == "site.deployed", result
    return site_id


@pytest.fixture(scope="module")
async def quiet(stack: Running) -> int:
    """Another tenant: its files and its log follow must be answered throughout."""
    site_id = fresh_site_id()
    write_site(stack.sites_root, site_id, page="quiet")
    result = await deploy(stack.director, stack.results, site_event("site.created", site_id, 1, serving=False))
    assert result.type == "site.deployed", result
    return site_id


@contextlib.asynccontextmanager
async def another_tenant(client: Client, site_id: int) -> AsyncIterator[list[str]]:
    """The other tenant's stat requests in a loop and its log follow, meanwhile; yields the list
    of what went wrong (empty: everything was answered, and the follow ended with its last reply)."""
    problems: list[str] = []
    answered = 0
    done = asyncio.Event()

    async def stats() -> None:
        nonlocal answered
        while not done.is_set():
            try:
                await client.request("files.stat", {"site_id": site_id, "path": "public/index.html"}, timeout=5)
                answered += 1
            except (OrchestratorError, TimeoutError) as exc:
                problems.append(f"stat: {exc!r}")
            await asyncio.sleep(0.2)

    async with client.logs.follow(site_id) as follow:
        first = await follow.next(10)
        assert first is not None and first.seq == 0
        looping = asyncio.create_task(stats())
        try:
            yield problems
        finally:
            done.set()
            await looping
            try:  # and after it all: answered still
                await client.request("files.stat", {"site_id": site_id, "path": "public/index.html"}, timeout=5)
                assert await follow.stop()
                while (update := await follow.next(10)) is not None and not update.last:
                    pass
                if follow.ended is None:
                    problems.append("the other tenant's follow ended without its last reply")
            except (OrchestratorError, TimeoutError) as exc:
                problems.append(f"the other tenant after the attack: {exc!r}")
    if not answered:
        problems.append("no stat request answered during the attack")


async def test_replies_stay_below_the_brokers_limit_whatever_the_site_plants_or_prints(
    client: Client, stack: Running, loud: int, quiet: int
) -> None:
    den = stack.sites_root / f"site_{loud:04d}" / "private" / "links"
    den.mkdir()
    owned(den, loud)
    for i in range(LINKS):
        os.symlink("\x01" * 4095, den / f"l{i:03d}")
        owned(den / f"l{i:03d}", loud)
    os.symlink(b"/not-utf-8-\xff", os.fsencode(den / "odd"))
    owned(den / "odd", loud)

    async with another_tenant(client, quiet) as problems:
        # A page of 200 such links is ~5 MB as it was: the broker refused it. Now a page is cut by
        # size (the next picks up where it stopped) and long link texts are cut and marked.
        started, entries, pages, cursor = time.monotonic(), [], 0, None
        while True:
            page = await client.request(
                "files.list", {"site_id": loud, "path": "private/links", "cursor": cursor, "limit": 1000}, timeout=15
            )
            pages += 1
            entries += page["entries"]
            if (cursor := page["next_cursor"]) is None:
                break
        listed_s = time.monotonic() - started
        assert len(entries) == LINKS + 1 and pages > 1, (len(entries), pages)
        assert all(e["target"] == "\x01" * 1024 and e["target_truncated"] for e in entries[:LINKS])
        assert entries[-1]["target"] == "/not-utf-8-\ufffd" and entries[-1]["target_truncated"]

        # The archive stores the link that is not UTF-8 as its bytes, and ends with its last chunk.
        archived = zipfile.ZipFile(io.BytesIO(b"".join([c async for c in client.files.archive(loud, "private/links")])))
        assert archived.read("odd") == b"/not-utf-8-\xff" and len(archived.namelist()) == LINKS + 1

        # A tail of 200 lines of 16 KiB (~20 MB in JSON as it was): the newest that fit, cut and marked.
        tail = await client.request("logs.tail", {"site_id": loud, "lines": 1000}, timeout=15)
        shown = tail["lines"]
        # (and the line the entry program writes first: "orchestrator: starting /site/run.sh")
        assert shown and tail["omitted"] + len(shown) == LINES + 1, (len(shown), tail["omitted"])
        assert all(line["truncated"] and line["text"] == "\x01" * 8192 for line in shown)

        # A follow with the whole backlog: every line arrives, in batches that each fit.
        got, batches = 0, 0
        async with client.logs.follow(loud, lines=LINES) as follow:
            while got < LINES:
                update = await follow.next(15)
                assert update is not None and not update.last, update
                got += len(update.lines)
                batches += 1
        assert got == LINES and batches > 2, (got, batches)
    assert problems == []
    print(f"list: {pages} pages in {listed_s:.1f} s; tail: {len(shown)} of {LINES} lines; follow: {batches} batches")


async def test_an_archive_of_a_sparse_terabyte_is_refused_before_it_is_read(
    client: Client, stack: Running, loud: int, quiet: int
) -> None:
    """`truncate -s 1T`: zeros compress 229:1, so a size cap on the zip alone let each archive
    read ~230 GB (minutes of CPU). A file counts by its size before a byte of it is read."""
    den = stack.sites_root / f"site_{loud:04d}" / "private" / "sparse"
    den.mkdir()
    with (den / "z").open("wb") as file:
        file.truncate(1 << 40)
    for path in (den, den / "z"):
        owned(path, loud)
    async with another_tenant(client, quiet) as problems:
        started = time.monotonic()
        codes = await asyncio.gather(
            *(
                client.request("files.archive", {"site_id": loud, "path": "private/sparse"}, timeout=15)
                for _ in range(3)
            ),
            return_exceptions=True,
        )
        took = time.monotonic() - started
    assert [getattr(c, "code", c) for c in codes] == ["too_large"] * 3
    assert took < 5, took
    assert problems == []


async def test_a_site_gets_its_stream_limit_however_many_ask_at_once_and_an_id_runs_once(
    client: Client, loud: int
) -> None:
    """Twelve follows of one site asked for together (the count was checked before an await and
    taken after it: all twelve ran); a follow's id asked for twice runs once (the second
    overwrote the first, which then could not be stopped)."""
    most = SETTINGS.files_max_streams_per_site
    async with contextlib.AsyncExitStack() as streams:
        follows = [await streams.enter_async_context(client.logs.follow(loud)) for _ in range(12)]
        firsts = await asyncio.gather(*(f.next(15) for f in follows), return_exceptions=True)
        running = [f for f, first in zip(follows, firsts, strict=True) if not isinstance(first, Exception)]
        refused = [getattr(first, "code", repr(first)) for first in firsts if isinstance(first, Exception)]
        assert len(running) == most and refused == ["busy"] * (12 - most), refused
        for follow in running:
            assert await follow.stop()
    first, second = client.logs.follow(loud), client.logs.follow(loud)
    second.stream_id = first.stream_id
    async with first, second:
        outcomes = await asyncio.gather(first.next(15), second.next(15), return_exceptions=True)
        assert sorted(getattr(o, "code", "running") for o in outcomes) == ["invalid_request", "running"], outcomes
        running = second if isinstance(outcomes[0], Exception) else first
        assert await running.stop()
        while await running.next(10) is not None:
            pass
        assert running.ended is not None and running.ended.last
