"""The bare request/reply floor on the bench's broker: bench/echo.py in a process of its own (as the
orchestrator is) and its client, direct reply-to, replies dispatched by correlation id. Shared by
the sections that set a round trip against it (terminal, files)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from common import VHOST

GUEST = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
DIRECT = "amq.rabbitmq.reply-to"
ECHO_QUEUE = "bench-echo"


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(median, p99)."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@dataclass
class EchoClient:
    connection: aio_pika.abc.AbstractRobustConnection
    channel: Any
    pending: dict[str, Any] = field(default_factory=dict)

    async def request(self, op: str, body: bytes, **headers: Any) -> bytes:
        correlation_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.pending[correlation_id] = future
        message = aio_pika.Message(body, correlation_id=correlation_id, reply_to=DIRECT, headers={"op": op, **headers})
        await self.channel.default_exchange.publish(message, ECHO_QUEUE, mandatory=False)
        try:
            async with asyncio.timeout(60):
                return await future  # type: ignore[no-any-return]
        finally:
            self.pending.pop(correlation_id, None)

    async def echo_round_trips(self, size: int, count: int, warm_up: int = 100) -> list[float]:
        """Seconds per bare echo of `size` bytes (base64 in JSON, as a `files.read` answers)."""
        request = json.dumps({"size": size}).encode()
        samples = []
        for i in range(count + warm_up):
            started = time.perf_counter()
            await self.request("echo", request)
            if i >= warm_up:
                samples.append(time.perf_counter() - started)
        return samples


def _start_server(url: str) -> subprocess.Popen[str]:
    script = str(Path(__file__).with_name("echo.py"))
    return subprocess.Popen([sys.executable, script, url, ECHO_QUEUE, "16"], stdout=subprocess.PIPE, text=True)


@contextlib.asynccontextmanager
async def bare_echo(url: str = GUEST) -> AsyncIterator[EchoClient]:
    """The bare server running, and a client connected to it."""
    server = _start_server(url)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        connection = await aio_pika.connect_robust(url)
        channel = await connection.channel(publisher_confirms=False)
        client = EchoClient(connection, channel)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            waiting = client.pending.get(message.correlation_id or "")
            if isinstance(waiting, asyncio.Queue):
                waiting.put_nowait(message.body)
            elif waiting is not None and not waiting.done():
                waiting.set_result(message.body)

        replies = await channel.get_queue(DIRECT, ensure=False)
        await replies.consume(on_reply, no_ack=True)
        try:
            yield client
        finally:
            await connection.close()
    finally:
        server.terminate()
        server.wait(10)
