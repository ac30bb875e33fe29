"""The files section of the benchmark (`bench/run.py --only files`): site files over the bus against
bare aio-pika floors on the same broker (`bench/echo.py`, a server in a process of its own).

- a 4 KiB `files.read` round trip against a bare request/reply echo of 4 KiB (median and p99);
- 50 MiB uploaded and downloaded against bare chunked publishing of the same bytes, raw and as
  base64 JSON (the contract's own encoding), to and from the bare server;
- a listing of 10,000 entries against reading the same directory locally (scandir + lstat).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
from common import VHOST, Bench, log
from rpc import DIRECT, ECHO_QUEUE, EchoClient, bare_echo, percentiles

from harness.director import site_event, write_site
from orchestrator.config import Settings
from orchestrator_client import Client

FILES_SITE = 8950  # one of the benchmark's sites (8000-8999)


async def files_section(bench: Bench, reads: int) -> dict[str, Any]:
    """Site files over the bus against bare aio-pika floors on the same broker (see the docstring)."""
    size, total = 4096, 50 * 1024 * 1024
    chunk = Settings().files_chunk_bytes
    async with bare_echo() as echo:
        write_site(bench.root, FILES_SITE, page="bench files", run_sh=False)
        event = site_event("site.created", FILES_SITE, 1, serving=False)
        await bench.director.publish(event)
        assert (await bench.results.wait_for(event["event_id"], 120)).type == "site.deployed"
        director_url = f"amqp://director:director@127.0.0.1:5672/{VHOST}"
        async with await Client.connect(director_url) as client:
            return await _files_measure(client, bench, echo, size, reads, total, chunk)


async def _files_measure(
    client: Client, bench: Bench, echo: EchoClient, size: int, count: int, total: int, chunk: int
) -> dict[str, Any]:
    site, process = FILES_SITE, bench.process
    log("files: 4 KiB read round trips, the orchestrator and the bare echo")
    ours, bare = await _read_round_trips(client, site, size, count, echo)
    ours_median, ours_p99 = percentiles(ours)
    bare_median, bare_p99 = percentiles(bare)

    log("files: 50 MiB up and down, the orchestrator and bare chunked publishing")
    data = os.urandom(total)
    pid = process.proc.pid  # type: ignore[union-attr]
    _reset_peak(pid)
    rss_before = _rss_mb(pid, "VmRSS")
    upload, download = await _transfers(client, site, data)
    rss_growth = _rss_mb(pid, "VmHWM") - rss_before
    bare_push = await _bare_push(echo, data, chunk)
    bare_pull = await _bare_pull(echo, total, chunk)

    log("files: listing 10,000 entries, over the bus and locally")
    listing, local_listing = await _listings(client, bench.root, site)
    mib = total / 1024 / 1024
    return {
        "read_4k": {"median_ms": round(ours_median * 1000, 2), "p99_ms": round(ours_p99 * 1000, 2),
                    "bare_median_ms": round(bare_median * 1000, 2), "bare_p99_ms": round(bare_p99 * 1000, 2),
                    "median_ratio": round(ours_median / bare_median, 2), "p99_ratio": round(ours_p99 / bare_p99, 2),
                    "round_trips": count},
        "upload_50mib": {"mib_per_s": round(mib / upload, 1), "bare_mib_per_s": round(mib / bare_push["json"], 1),
                         "ratio": round(bare_push["json"] / upload, 2),
                         "bare_raw_mib_per_s": round(mib / bare_push["raw"], 1),
                         "ratio_to_raw": round(bare_push["raw"] / upload, 2)},
        "download_50mib": {"mib_per_s": round(mib / download, 1), "bare_mib_per_s": round(mib / bare_pull, 1),
                           "ratio": round(bare_pull / download, 2)},
        "list_10000": {"seconds": round(listing, 3), "pages": 10, "local_seconds": round(local_listing, 3),
                       "ratio": round(listing / local_listing, 1)},
        "rss_growth_mb_during_transfers": round(rss_growth, 1),
    }  # fmt: skip


async def _read_round_trips(
    client: Client, site: int, size: int, count: int, echo: EchoClient
) -> tuple[list[float], list[float]]:
    """Seconds per 4 KiB read through the orchestrator, and per bare echo of the same size, one
    after the other, so both see the same machine (it is shared and noisy)."""
    await client.files.write(site, "public/4k.bin", os.urandom(size))
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(100):  # warm up
        await client.files.read(site, "public/4k.bin")
    await echo.echo_round_trips(size, 0)
    for _ in range(count):
        started = time.perf_counter()
        await client.files.read(site, "public/4k.bin")
        ours.append(time.perf_counter() - started)
        bare += await echo.echo_round_trips(size, 1, warm_up=0)
    return ours, bare


async def _transfers(client: Client, site: int, data: bytes) -> tuple[float, float]:
    """Seconds to upload `data` through the orchestrator and to download it back."""
    started = time.perf_counter()
    await client.files.write(site, "public/50m.bin", data)
    upload = time.perf_counter() - started
    started = time.perf_counter()
    downloaded = hashlib.sha256()
    async for piece in client.files.download(site, "public/50m.bin"):
        downloaded.update(piece)
    download = time.perf_counter() - started
    assert downloaded.hexdigest() == hashlib.sha256(data).hexdigest()
    return upload, download


async def _bare_push(echo: EchoClient, data: bytes, chunk: int) -> dict[str, float]:
    """Bare push: the same bytes in chunks of the same size, 8 in flight with confirms (as the
    client's upload window), to a consumer that answers once it has them all: raw, and as the
    contract carries them (base64 in JSON, decoded by the consumer). The last chunk carries the
    reply_to: a direct reply-to request leaves on the channel that consumes the replies."""
    total, channel, pending = len(data), echo.channel, echo.pending
    publisher = await echo.connection.channel(publisher_confirms=True)
    bare_push: dict[str, float] = {}
    for encoding in ("raw", "json"):
        done = asyncio.get_running_loop().create_future()
        correlation_id = uuid.uuid4().hex
        pending[correlation_id] = done
        started = time.perf_counter()
        inflight: list[Any] = []
        offsets = range(0, total, chunk)
        for offset in offsets:
            last = offset == offsets[-1]
            piece = data[offset : offset + chunk]
            if encoding == "json":
                piece = json.dumps({"offset": offset, "data": base64.b64encode(piece).decode()}).encode()
            headers = {"op": "sink", "total": total, "encoding": encoding}
            message = aio_pika.Message(
                piece, correlation_id=correlation_id, reply_to=DIRECT if last else None, headers=headers
            )
            sender = channel if last else publisher
            inflight.append(asyncio.create_task(sender.default_exchange.publish(message, ECHO_QUEUE)))
            if len(inflight) >= 8:
                await inflight.pop(0)
        await asyncio.gather(*inflight)
        async with asyncio.timeout(120):
            await done
        bare_push[encoding] = time.perf_counter() - started
    return bare_push


async def _bare_pull(echo: EchoClient, total: int, chunk: int) -> float:
    """Bare pull: seconds for the same bytes sent back in chunks to a reply queue."""
    channel, pending = echo.channel, echo.pending
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    correlation_id = uuid.uuid4().hex
    pending[correlation_id] = replies
    started = time.perf_counter()
    body = json.dumps({"size": chunk, "count": total // chunk}).encode()
    await channel.default_exchange.publish(
        aio_pika.Message(body, correlation_id=correlation_id, reply_to=DIRECT, headers={"op": "source"}),
        ECHO_QUEUE,
    )
    for _ in range(total // chunk):
        async with asyncio.timeout(60):
            base64.b64decode(json.loads(await replies.get())["result"]["data"])
    return time.perf_counter() - started


async def _listings(client: Client, root: Path, site: int) -> tuple[float, float]:
    """Seconds to list 10,000 entries over the bus (pages of 1,000), and locally."""
    folder = root / f"site_{site:04d}" / "public" / "many"
    folder.mkdir()
    for i in range(10_000):
        (folder / f"entry-{i:05d}").touch()
    started = time.perf_counter()
    listed = [entry.name async for entry in client.files.list_all(site, "public/many", limit=1000)]
    listing = time.perf_counter() - started
    assert len(listed) == 10_000
    started = time.perf_counter()
    with os.scandir(folder) as scan:
        local = sorted((e.name, e.stat(follow_symlinks=False).st_size) for e in scan)
    local_listing = time.perf_counter() - started
    assert len(local) == 10_000
    return listing, local_listing


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def files_table(files: dict[str, Any]) -> list[tuple[str, str, str]]:
    read, up, down, listing = files["read_4k"], files["upload_50mib"], files["download_50mib"], files["list_10000"]
    return [
        ("files", f"4 KiB read median {read['median_ms']} ms, p99 {read['p99_ms']} ms",
         f"{read['median_ratio']}x / {read['p99_ratio']}x a bare echo ({read['bare_median_ms']} / "
         f"{read['bare_p99_ms']} ms)"),
        ("upload", f"50 MiB at {up['mib_per_s']} MiB/s", f"{up['ratio']}x bare chunked publishing as base64 JSON "
         f"({up['bare_mib_per_s']} MiB/s); {up['ratio_to_raw']}x of raw bytes ({up['bare_raw_mib_per_s']} MiB/s)"),
        ("download", f"50 MiB at {down['mib_per_s']} MiB/s", f"{down['ratio']}x bare chunked publishing as base64 JSON "
         f"({down['bare_mib_per_s']} MiB/s); RSS +{files['rss_growth_mb_during_transfers']} MB"),
        ("list", f"10,000 entries in {listing['seconds']} s ({listing['pages']} pages)",
         f"{listing['ratio']}x a local scandir + lstat ({listing['local_seconds']} s)"),
    ]  # fmt: skip
