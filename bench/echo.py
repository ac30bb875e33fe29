"""The bare request/reply floor for `bench/run.py --only files`, in a process of its own (as the
orchestrator is): the least a server on the same broker can do, with aio-pika and nothing else.

Consumes `<queue>` (classic, the prefetch given) and, by the `op` header:
- `echo`: replies `size` bytes (base64 in JSON, as a `files.read` does) to `reply_to`, then acks;
- `sink`: takes a chunk (raw, or base64 in JSON as a `files.write` carries it: then decoded),
  acks; once `total` bytes came and a chunk has a `reply_to`, replies to it;
- `source`: sends `count` chunks of `size` bytes (base64 in JSON) to `reply_to`, then acks.
Replies go to the default exchange with the request's correlation_id, without confirms.

    python bench/echo.py AMQP_URL QUEUE PREFETCH
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys

import aio_pika
from aio_pika.abc import AbstractIncomingMessage


async def main(url: str, queue_name: str, prefetch: int) -> None:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(queue_name, auto_delete=True)
    exchange = channel.default_exchange
    received = 0
    answer_to: AbstractIncomingMessage | None = None  # the sink's chunk that carried the reply_to

    async def reply(message: AbstractIncomingMessage, body: bytes) -> None:
        await exchange.publish(
            aio_pika.Message(body, correlation_id=message.correlation_id, content_type="application/json"),
            str(message.reply_to),
            mandatory=False,
        )

    async def handle(message: AbstractIncomingMessage) -> None:
        nonlocal received, answer_to
        op = (message.headers or {}).get("op")
        request = json.loads(message.body) if op != "sink" else {}
        if op == "echo":
            data = base64.b64encode(os.urandom(request["size"])).decode()
            await reply(message, json.dumps({"ok": True, "result": {"data": data}}).encode())
        elif op == "sink":
            if (message.headers or {}).get("encoding") == "json":
                received += len(base64.b64decode(json.loads(message.body)["data"]))
            else:
                received += len(message.body)
            answer_to = message if message.reply_to else answer_to  # chunks from two channels: any order
            if answer_to is not None and received >= int((message.headers or {}).get("total", 0)):
                received, asker, answer_to = 0, answer_to, None
                await reply(asker, b'{"ok": true}')
        elif op == "source":
            piece = os.urandom(request["size"])
            for seq in range(request["count"]):
                data = base64.b64encode(piece).decode()
                await reply(message, json.dumps({"ok": True, "result": {"seq": seq, "data": data}}).encode())
        await message.ack()

    await queue.consume(handle)
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
