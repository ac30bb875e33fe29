"""One leaked broker credential (Director's) tries to fill the broker and the orchestrator: a huge
message, and a flood of poison into the dead-letter queue. Both hit a bound; the service answers."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import uuid

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractRobustConnection
from support import DeadLetters, Director, Results, deploy, site_event

from harness.rabbit import LOCAL_BROKER
from orchestrator.bus.decoding import MAX_BODY


async def test_a_message_over_the_brokers_limit_is_refused_by_the_broker(vhost: str) -> None:
    connection = await aio_pika.connect(f"amqp://director:director@127.0.0.1:5672/{vhost}")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("director.sites", ensure=False)
        huge = aio_pika.Message(b"x" * (100 * 1024 * 1024), user_id="director")
        with pytest.raises((aio_pika.exceptions.AMQPError, ConnectionError)):
            async with asyncio.timeout(30):
                await exchange.publish(huge, "site.created")


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


async def test_bad_file_requests_have_their_own_bounded_dead_letters_and_reply_queues_a_policy(
    vhost: str, director: Director, admin: AbstractRobustConnection, dead_letters: DeadLetters
) -> None:
    """Round four: invalid file (and terminal) requests shared the site events' dead-letter queue,
    whose drop-head bound then pushed site events' letters out; `director.replies.*` queues had no
    bound at all, the file request queue a count only. A test-sized bound, the same mechanism."""
    LOCAL_BROKER.ctl("set_policy", "-p", vhost, "--apply-to", "queues", "--priority", "9", "test-file-letters",
                     r"^orchestrator\.file-requests\.dead$", '{"max-length": 50, "overflow": "drop-head"}')  # fmt: skip
    connection = await aio_pika.connect(f"amqp://director:director@127.0.0.1:5672/{vhost}")
    try:
        await dead_letters.take()
        await director.publish(body=b"a site event's letter", routing_key="site.created", message_id="kept-letter")
        channel = await connection.channel(publisher_confirms=True)
        files = await channel.get_exchange("director.files", ensure=False)
        for i in range(200):  # no reply_to: nobody can be answered, so each is dead-lettered
            await files.publish(aio_pika.Message(b"{}", user_id="director", message_id=f"bad-{i}"), "files.list")
        probe = await admin.channel()

        async def count(name: str) -> int:
            return (await probe.declare_queue(name, passive=True)).declaration_result.message_count or 0

        for _ in range(120):  # every request taken and dead-lettered (nothing consumed the letters)
            if await count("orchestrator.file-requests") == 0 and await count("orchestrator.file-requests.dead") == 50:
                break
            await asyncio.sleep(0.25)
        assert await count("orchestrator.file-requests.dead") == 50  # its own bound, oldest out
        await dead_letters.take()
        assert "kept-letter" in dead_letters.seen  # the site event's letter is apart, not pushed out

        # A reply queue Director declares is bounded by the broker's policy, so is the file queue.
        reply_channel = await connection.channel()
        reply_queue = f"director.replies.bounds-{uuid.uuid4().hex[:8]}"
        await reply_channel.declare_queue(reply_queue, exclusive=True, auto_delete=True)
        listed = (
            await asyncio.to_thread(
                subprocess.run,
                ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "policy", "--no-table-headers"],
                capture_output=True, text=True, check=True, timeout=30,
            )
        ).stdout  # fmt: skip
        # "name<TAB>policy" a line; a queue without a policy ends in its tab (never strip() the text).
        policies = {name: policy for name, _, policy in (line.partition("\t") for line in listed.splitlines())}
        assert policies[reply_queue] == "director-replies"
        assert policies["orchestrator.file-requests"] == "orchestrator-file-requests"
        assert policies["orchestrator.terminal-commands.dead"] == "orchestrator-request-dead-letters"
    finally:
        await connection.close()
        LOCAL_BROKER.ctl("clear_policy", "-p", vhost, "test-file-letters")
