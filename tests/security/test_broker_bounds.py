"""One leaked broker credential (Director's) tries to fill the broker and the orchestrator: a huge
message, and a flood of poison into the dead-letter queue. Both hit a bound; the service answers."""

from __future__ import annotations

import asyncio
import hashlib

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractRobustConnection
from support import DeadLetters, Director, Results, deploy, site_event
from support.rabbit import LOCAL_BROKER

from orchestrator.contract.decoding import MAX_BODY


async def test_a_message_over_the_brokers_limit_is_refused_by_the_broker(vhost: str) -> None:
    connection = await aio_pika.connect(f"amqp://director:director@127.0.0.1:5672/{vhost}")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("director.sites", ensure=False)
        huge = aio_pika.Message(b"x" * (100 * 1024 * 1024), user_id="director")
        with pytest.raises((aio_pika.exceptions.AMQPError, ConnectionError)):
            await asyncio.wait_for(exchange.publish(huge, "site.created"), 30)


async def test_a_poison_flood_stays_within_the_dead_letter_bound_and_the_service_answers(
    vhost: str,
    director: Director,
    results: Results,
    admin: AbstractRobustConnection,
    dead_letters: DeadLetters,
    site_id: int,
) -> None:
    # The definitions bound the dead letters at 10,000; a test-sized bound, same mechanism.
    LOCAL_BROKER.ctl("set_policy", "-p", vhost, "--apply-to", "queues", "--priority", "9", "test-dead-letters",
                r"^orchestrator\.site-events\.dead$", '{"max-length": 100, "overflow": "drop-head"}')  # fmt: skip
    try:
        await dead_letters.take()
        oversized = [b"{" + b" " * (MAX_BODY + 10) + b"}" for _ in range(3)]
        for i in range(250):
            await director.publish(body=b"not json %d" % i, routing_key="site.created")
        for body in oversized:  # last, so they are among the letters kept
            await director.publish(body=body, routing_key="site.created")

        async def drained() -> bool:
            queue = await (await admin.channel()).declare_queue("orchestrator.site-events", passive=True)
            return queue.declaration_result.message_count == 0

        for _ in range(120):
            if await drained():
                break
            await asyncio.sleep(0.5)
        channel = await admin.channel()
        queue = await channel.declare_queue("orchestrator.site-events.dead", passive=True)
        assert queue.declaration_result.message_count <= 100  # the oldest went first

        # The service answers while the flood has passed through.
        event = site_event("site.created", site_id, 1, serving=False)
        assert (await deploy(director, results, event)).type == "site.deployed"

        letters = await dead_letters.take()
        truncated = [m for m in letters if (m.headers or {}).get("x-orchestrator-truncated")]
        assert len(truncated) == len(oversized)
        for message in truncated:  # copies of bodies past the contract keep their head and digest
            headers = message.headers or {}
            assert len(message.body) == 4096 and headers["x-orchestrator-truncated"] == MAX_BODY + 12
            assert headers["x-orchestrator-body-sha256"] == hashlib.sha256(oversized[0]).hexdigest()
    finally:
        LOCAL_BROKER.ctl("clear_policy", "-p", vhost, "test-dead-letters")


async def test_director_can_neither_redeclare_nor_delete_its_exchanges(vhost: str) -> None:
    """Deleting or redeclaring director.sites would silently drop events (and crash-loop a
    consumer that declared it): Director's user only publishes there."""
    connection = await aio_pika.connect(f"amqp://director:director@127.0.0.1:5672/{vhost}")
    async with connection:
        for attempt in ("declare", "delete"):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                if attempt == "declare":
                    await channel.declare_exchange("director.sites", aio_pika.ExchangeType.TOPIC, durable=True)
                else:
                    await channel.exchange_delete("director.sites")
