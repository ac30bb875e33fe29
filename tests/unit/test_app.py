"""The composition root's pure parts: the binding table, and a shutdown that lets every queue's
in-flight messages finish."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from orchestrator.app import bindings, finish
from orchestrator.bus import topology
from orchestrator.bus.consumer import QueueConsumer
from orchestrator.config import Settings


def _consumer(name: str, release: asyncio.Event, finished: list[str]) -> QueueConsumer:
    async def receive(message: Any) -> None:
        await release.wait()
        finished.append(name)

    queue = SimpleNamespace(name=name, declaration_result=None, channel=SimpleNamespace(is_closed=False))
    return QueueConsumer(queue, receive)  # type: ignore[arg-type]


async def test_shutdown_waits_for_the_inflight_messages_of_every_queue() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    finished: list[str] = []
    consumers = (_consumer("sites", first, finished), _consumer("files", second, finished))
    handling = [asyncio.create_task(c._on_message(SimpleNamespace())) for c in consumers]  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert [c.inflight for c in consumers] == [1, 1]

    stopping = asyncio.create_task(finish(consumers, grace=5))
    first.set()
    await asyncio.sleep(0.05)
    assert finished == ["sites"] and not stopping.done()  # the file request is still in flight
    second.set()
    async with asyncio.timeout(10):
        await stopping
    assert finished == ["sites", "files"]
    await asyncio.gather(*handling)


async def test_shutdown_takes_no_new_message_and_gives_up_after_the_grace_period() -> None:
    never = asyncio.Event()
    finished: list[str] = []
    consumers = (_consumer("sites", never, finished), _consumer("terminals", never, finished))
    stuck = asyncio.create_task(consumers[1]._on_message(SimpleNamespace()))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await finish(consumers, grace=0.05)
    await consumers[0]._on_message(SimpleNamespace())  # type: ignore[arg-type]
    assert consumers[0].inflight == 0 and consumers[1].inflight == 1 and finished == []
    stuck.cancel()


def test_the_binding_table_names_each_queue_once(settings: Settings) -> None:
    table = bindings(settings, "host:1")
    assert set(table) == {"sites", "terminals", "files", "databases", "metrics", "samples"}
    declared = [b.declare for b in table.values()]
    assert declared[:5] == [
        topology.declare,
        topology.declare_terminals,
        topology.declare_files,
        topology.declare_databases,
        topology.declare_metrics,
    ]
    assert {b.exchange for b in table.values()} == {
        settings.inbound_exchange,
        settings.terminal_exchange,
        settings.files_exchange,
        settings.collector_exchange,
        settings.databases_exchange,
    }
    # Only site events come back for delayed retries; file, database and metrics requests answer without
    # confirms; samples come from the collectors' broker users.
    assert table["sites"].attempts == settings.max_attempts
    assert table["sites"].requeue_exchange == settings.requeue_exchange
    assert [b.attempts for name, b in table.items() if name != "sites"] == [1, 1, 1, 1, 1]
    assert [name for name, b in table.items() if b.quick_replies] == ["files", "databases", "metrics"]
    assert [name for name, b in table.items() if b.publishers] == ["samples"]


def test_without_metrics_there_are_no_metrics_queues() -> None:
    assert set(bindings(Settings(metrics_seconds=0), "host:1")) == {"sites", "terminals", "files", "databases"}
