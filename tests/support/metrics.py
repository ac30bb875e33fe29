"""Metrics as an operator's queue receives them (`site.metrics`, `node.metrics`,
`orchestrator.metrics` on the results exchange), and a node's collector as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from harness.stack import RESULTS, ROOT
from orchestrator_contract.metrics import NodeMetrics, OrchestratorMetrics, SiteMetrics


class MetricsWatch:
    """Every metrics event on the results exchange, on a queue of the connection's user (the
    observer's `observer.*`, as a monitoring service reads them)."""

    def __init__(self) -> None:
        self.sites: list[SiteMetrics] = []
        self.nodes: list[NodeMetrics] = []
        self.own: list[OrchestratorMetrics] = []
        self._changed = asyncio.Condition()

    async def start(self, connection: AbstractRobustConnection, prefix: str = "observer.") -> None:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            f"{prefix}metrics-{uuid.uuid4().hex[:12]}", exclusive=True, auto_delete=True
        )
        for key in ("site.metrics", "node.metrics", "orchestrator.metrics"):
            await queue.bind(RESULTS, key)  # the orchestrator's exchange: bound by name, never declared
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with self._changed:
            if message.routing_key == "site.metrics":
                self.sites.append(SiteMetrics.model_validate_json(message.body))
            elif message.routing_key == "node.metrics":
                self.nodes.append(NodeMetrics.model_validate_json(message.body))
            else:
                self.own.append(OrchestratorMetrics.model_validate_json(message.body))
            self._changed.notify_all()

    def of(self, site_id: int) -> list[SiteMetrics]:
        return [m for m in self.sites if m.site_id == site_id]

    async def until(self, done: Callable[[], bool], timeout: float = 45, why: Callable[[], str] | None = None) -> None:
        """Until `done()`; on timeout, an AssertionError with `why()` (what was seen instead)."""
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(done)
        except TimeoutError:
            raise AssertionError(f"not within {timeout} s: {why() if why else ''}") from None


@contextlib.contextmanager
def collecting(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`orchestrator collect` with `env`, once it is connected (its heartbeat says so), stopped
    cleanly afterwards."""
    heartbeat = Path(env["ORCHESTRATOR_HEARTBEAT_FILE"])
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "collect"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 20
        while not heartbeat.exists():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        assert process.wait(10) == 0, log_path.read_text()[-2000:]
