"""Metrics as an operator's queue receives them (`site.metrics`, `node.metrics`,
`orchestrator.metrics` on the results exchange), and a node's collector as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
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
    cleanly afterwards. In a pid namespace of its own, as compose's `collector` runs (a swarm
    service has no host pid namespace): the node's processes are not its own, and a cgroup's
    `cgroup.procs` lists none of them."""
    heartbeat = Path(env["ORCHESTRATOR_HEARTBEAT_FILE"])
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "orchestrator", "collect"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 20
        while not heartbeat.exists():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.1)
        yield process
    finally:
        # unshare waits for its child, ignoring SIGTERM: the collector (pid 1 of its namespace,
        # which takes the signals it handles) is told to stop, and unshare exits as it did.
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(children.read_text().split()[0]), signal.SIGTERM)
        try:
            code = process.wait(10)
        finally:
            process.kill()  # a stuck one: --kill-child takes the collector with it
        assert code == 0, log_path.read_text()[-2000:]
