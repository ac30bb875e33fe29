"""The bus: redelivered events against a bare aio-pika loop, a keystroke's echo against a bare
request/reply echo, and the pure parse + spec path against json.loads."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
from common import API, FIRST_SITE, VHOST, Bench, host
from rpc import bare_echo, percentiles

from harness.broker import connected
from harness.director import site_event
from orchestrator.bus.decoding import parse_event
from orchestrator.config import Settings
from orchestrator.sites.admission import admit
from orchestrator.sites.spec import desired_service
from orchestrator.slices import Admission, SiteRuntime
from orchestrator_contract.sites import SiteCreated
from orchestrator_contract.terminals import TerminalUpdate

# --- no-op throughput ------------------------------------------------------------------------------


async def publish_all(exchange: aio_pika.abc.AbstractExchange, messages: list[tuple[bytes, str, str]]) -> None:
    """Publish with confirms pipelined (in flight together), as a busy Director would."""
    await asyncio.gather(
        *(
            exchange.publish(aio_pika.Message(body, message_id=message_id, user_id="director"), routing_key)
            for body, routing_key, message_id in messages
        )
    )


async def noop_orchestrator(bench: Bench, sites: list[int], count: int) -> float:
    """Redeliveries of each applied site's event (Director resending its fleet), spread over the
    sites and published at once: results per second."""
    originals = [site_event("site.created", s, 1, domains=[host(s)]) for s in sites]
    messages = [(json.dumps(e).encode(), "site.created", e["event_id"]) for e in originals]
    before = len(bench.results.messages)
    started = time.monotonic()
    await publish_all(bench.director.exchange, [messages[i % len(messages)] for i in range(count)])
    await bench.results.wait_total(before + count, timeout=600)
    return count / (time.monotonic() - started)


async def noop_bare(prefetch: int, count: int) -> float:
    """The least any consumer does: consume, publish a result with confirms, ack; the same queue
    types (quorum work queue, quorum results queue) and the same way of publishing."""
    async with connected("guest", VHOST) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        tag = uuid.uuid4().hex[:6]
        inbound = await channel.declare_exchange(f"bench.bare.in.{tag}", aio_pika.ExchangeType.TOPIC, auto_delete=True)
        queue = await channel.declare_queue(f"bench.bare.{tag}", durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(inbound, "#")
        out = await channel.declare_exchange(f"bench.bare.out.{tag}", aio_pika.ExchangeType.TOPIC, auto_delete=True)
        sink = await channel.declare_queue(
            f"bench.bare.results.{tag}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await sink.bind(out, "#")
        done = asyncio.Event()
        seen = 0

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            json.loads(message.body)
            result = aio_pika.Message(b'{"type": "site.deployed"}', delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await out.publish(result, "site.deployed", mandatory=True)
            await message.ack()
            seen += 1
            if seen == count:
                done.set()

        await queue.consume(handle)
        body = json.dumps(site_event("site.created", FIRST_SITE, 1)).encode()
        publisher = await connection.channel(publisher_confirms=True)
        exchange = await publisher.get_exchange(inbound.name)
        started = time.monotonic()
        await asyncio.gather(*(exchange.publish(aio_pika.Message(body), "site.created") for _ in range(count)))
        await done.wait()
        return count / (time.monotonic() - started)  # the queues go with the bench's vhost


async def noop_section(bench: Bench, sites: list[int], count: int, prefetch: int) -> dict[str, Any]:
    ours = await noop_orchestrator(bench, sites, count)
    bare = await noop_bare(prefetch, count)
    return {"orchestrator_per_second": round(ours), "bare_loop_per_second": round(bare), "ratio": round(ours / bare, 2)}


# --- terminal ------------------------------------------------------------------------------------


async def terminal_rtt(site_id: int, count: int = 300) -> dict[str, Any]:
    """Keystroke echo through the bus: terminal.input published as Director would, until the
    `output` update carrying the echo arrives; against a bare 4 KiB request/reply echo on the same
    broker (bench/echo.py: the bus's floor), one after the other so both see the same machine, and
    for context the same echo over a bare Docker attach."""
    async with (
        connected("director", VHOST) as director,
        connected("director", VHOST) as listening,
        bare_echo() as echo,
    ):
        commands = await (await director.channel()).get_exchange("director.terminals", ensure=False)
        listener = await listening.channel()
        updates = await listener.get_exchange("orchestrator.terminals", ensure=False)
        session = uuid.uuid4()
        queue = await listener.declare_queue(f"director.replies.terminal-{session}", exclusive=True, auto_delete=True)
        await queue.bind(updates, f"terminal.{session}")
        received: asyncio.Queue[TerminalUpdate] = asyncio.Queue()

        async def on_update(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received.put_nowait(TerminalUpdate.model_validate_json(message.body))

        await queue.consume(on_update, no_ack=True)

        async def send(command: str, **body: Any) -> None:
            payload = json.dumps({"session_id": str(session), **body}).encode()
            await commands.publish(aio_pika.Message(payload, user_id="director"), f"terminal.{command}")

        async def quiet() -> None:  # the prompt and anything else pending
            with contextlib.suppress(TimeoutError):
                while True:
                    async with asyncio.timeout(1.0):
                        await received.get()

        async def keystroke() -> float:
            started = time.perf_counter()
            await send("input", data=base64.b64encode(b"x").decode())
            async with asyncio.timeout(10):
                while b"x" not in base64.b64decode((await received.get()).data or ""):
                    pass
            return time.perf_counter() - started

        await send("open", site_id=site_id, cols=200, rows=50)
        await quiet()
        for _ in range(20):  # warm up
            await keystroke()
        keys: list[float] = []
        bare: list[float] = []
        await echo.echo_round_trips(4096, 0)
        for n in range(count):  # one after the other: both see the same machine
            keys.append(await keystroke())
            bare += await echo.echo_round_trips(4096, 1, warm_up=0)
            if n % 100 == 99:
                await send("input", data=base64.b64encode(b"\x15").decode())  # clear the line
                await quiet()
        await send("input", data=base64.b64encode(b"\x15").decode())
        await send("close")
        await quiet()
    attach = await asyncio.to_thread(attach_rtt, count)
    median, p99 = percentiles(keys)
    bare_median, bare_p99 = percentiles(bare)
    return {
        "keystrokes": len(keys),
        "median_ms": round(median * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(max(keys) * 1000, 2),
        "bare_echo_median_ms": round(bare_median * 1000, 2),
        "bare_echo_p99_ms": round(bare_p99 * 1000, 2),
        "median_ratio": round(median / bare_median, 2),
        "p99_ratio": round(p99 / bare_median, 2),
        "bare_attach_median_ms": round(attach, 2),
    }


def attach_rtt(count: int) -> float:
    """Median echo over a plain Docker attach to a shell container (no bus): the floor."""
    container = API.create_container("director/base:latest", command=["/bin/sh"], tty=True, stdin_open=True)
    try:
        sock = API.attach_socket(container["Id"], params={"stdin": 1, "stdout": 1, "stream": 1})
        raw = sock._sock
        API.start(container["Id"])
        time.sleep(0.5)
        raw.recv(65536)
        rtts = []
        for _ in range(count):
            started = time.perf_counter()
            raw.sendall(b"x")
            raw.recv(65536)
            rtts.append((time.perf_counter() - started) * 1000)
        return statistics.median(rtts)
    finally:
        API.remove_container(container["Id"], force=True)


# --- the pure path --------------------------------------------------------------------------------


def pure_ratios() -> dict[str, float]:
    settings = Settings()
    admission, runtime = Admission.of(settings), SiteRuntime.of(settings)  # built once, as the handler's
    body = json.dumps(site_event("site.created", 42, 3, domains=[f"d{i}.example.com" for i in range(5)])).encode()
    root = Path("/srv/director/sites/site_0042")

    def per_call(fn: Any, calls: int = 2000, rounds: int = 11) -> float:
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            samples.append((time.perf_counter() - started) / calls)
        return statistics.median(samples)

    def spec() -> None:
        event = parse_event(body, "site.created")
        assert isinstance(event, SiteCreated)
        desired_service(admit(event.site, admission), event.version, runtime, root)

    base = per_call(lambda: json.loads(body))
    return {
        "json_loads_us": round(base * 1e6, 1),
        "parse_event_x": round(per_call(lambda: parse_event(body, "site.created")) / base, 1),
        "parse_and_spec_x": round(per_call(spec) / base, 1),
    }
