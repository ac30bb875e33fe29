"""The network guard: keeps this node's part of the sites network filtered (`sites/isolation.py`).

It runs wherever sites run: inside `orchestrator run` when that process sits on the host (the
local stack, the tests), and as `orchestrator netguard` on every site node in production (a global
service: `compose.yaml`). It is state-based: whenever a container joins the network, every
`network_guard_resync_seconds` and after a lost Docker connection, it reads who is on the network
here and writes the whole filter again if anything differs from what it last wrote (a namespace
made again, after the last container left and a new one came, is a difference)."""

from __future__ import annotations

import asyncio
import logging
import threading
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.logs import fields
from orchestrator.sites.isolation import NODE_CHAIN, filter_table, node_chain
from orchestrator.swarm.netns import FilterNotApplied, follow_connects

log = logging.getLogger("orchestrator.netguard")
SETTLE_SECONDS = 0.05  # a burst of joins (a fleet starting) is one pass


class Network(Protocol):
    """The sites network on this node (swarm/netns.py; a fake in the unit tests)."""

    name: str

    async def network_id(self) -> str: ...
    def forget(self) -> None: ...
    def namespace(self, network_id: str) -> Path: ...
    async def edges(self, network_id: str) -> list[IPv4Address]: ...
    async def restore(self, namespace: Path, table: str) -> None: ...
    async def guard_node(self, chain: str, table: str) -> bool: ...


class NetworkGuard:
    def __init__(self, settings: Settings, network: Network) -> None:
        self._settings = settings
        self._network = network
        self._written: tuple[int, str] | None = None  # (namespace inode, table) last written
        self._failing = ""
        self.passes = 0  # passes that wrote a filter (for tests and the log)

    @property
    def problem(self) -> str:
        """Why the last pass failed; empty if it did not."""
        return self._failing and f"cannot filter the sites network: {self._failing}"

    async def run(self) -> None:
        nudged = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopped = threading.Event()
        follower: threading.Thread | None = None
        try:
            while True:
                try:
                    network_id = await self._network.network_id()
                    if follower is None:
                        follower = threading.Thread(
                            target=follow_connects,
                            args=(
                                self._settings.docker_url,
                                network_id,
                                lambda: loop.call_soon_threadsafe(nudged.set),
                                stopped,
                            ),
                            name="netguard-events",
                            daemon=True,
                        )
                        follower.start()
                    await self.sync(network_id)
                except (OrchestratorError, FilterNotApplied, OSError) as exc:
                    self._network.forget()
                    self._report(str(exc))
                nudged.clear()
                try:
                    async with asyncio.timeout(self._settings.network_guard_resync_seconds):
                        await nudged.wait()
                    await asyncio.sleep(SETTLE_SECONDS)
                except TimeoutError:
                    pass
        finally:
            stopped.set()

    async def sync(self, network_id: str) -> None:
        if await self._network.guard_node(NODE_CHAIN, node_chain()):
            log.info("the node closed to containers on its sites' way out", extra=fields(chain=NODE_CHAIN))
        namespace = self._network.namespace(network_id)
        try:
            inode = namespace.stat().st_ino
        except FileNotFoundError:
            self._written = None  # nothing of the network on this node yet: nothing to filter
            return
        table = filter_table(await self._network.edges(network_id))
        if self._written == (inode, table):
            return
        await self._network.restore(namespace, table)
        self._written = (inode, table)
        self.passes += 1
        if self._failing:
            log.info("sites network filtered again", extra=fields(network=self._network.name))
            self._failing = ""
        log.info(
            "sites network filtered: sites may not open connections on it",
            extra=fields(network=self._network.name, namespace=str(namespace), edges=table.count(" -s ")),
        )

    def _report(self, error: str) -> None:
        """Loud once per distinct failure: an unfiltered network is a security hole, not noise."""
        if error != self._failing:
            log.error(
                "cannot filter the sites network: sites can reach each other",
                extra=fields(network=self._network.name, error=error),
            )
            self._failing = error
