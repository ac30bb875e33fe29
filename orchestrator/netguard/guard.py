"""The network guard: keeps this node's part of the sites network filtered (`netguard.rules`).

It runs wherever sites run: inside `orchestrator run` when that process sits on the host (the
local stack, the tests), and as `orchestrator netguard` on every site node in production (a global
service: `compose.yaml`). It is state-based: whenever a container joins the network, every
`network_guard_resync_seconds` and after a lost Docker connection, it reads who is on the network
here and writes the whole filter again if anything differs from what it last wrote (a namespace
made again, after the last container left and a new one came, is a difference)."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Protocol

from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.logging_setup import fields
from orchestrator.netguard.network import FilterNotApplied
from orchestrator.netguard.rules import NODE_CHAIN, database_ports, filter_table, node_chain, open_table

log = logging.getLogger("orchestrator.netguard")
SETTLE_SECONDS = 0.05  # a burst of joins (a fleet starting) is one pass


class Network(Protocol):
    """The sites network on this node (`netguard.network`; a fake in the unit tests)."""

    name: str

    async def network_id(self) -> str: ...
    def forget(self) -> None: ...
    def namespaces(self, network_id: str) -> list[Path]: ...
    async def endpoints(self, network_id: str) -> tuple[list[IPv4Address], int]: ...
    async def bridged_packets_filtered(self, namespace: Path) -> bool: ...
    async def restore(self, namespace: Path, table: str) -> None: ...
    async def nodes(self, network_id: str, hosts: Iterable[str]) -> list[IPv4Address]: ...
    async def trusted(self) -> list[IPv4Address]: ...
    async def guard_node(self, chain: str, table: str) -> bool: ...
    async def release_node(self, chain: str) -> None: ...
    def follow(self, network_id: str, nudge: Callable[[], None], stopped: threading.Event) -> None:
        """Call `nudge` (from any thread) when a container joins, until `stopped` is set."""


class NetworkGuard:
    def __init__(self, settings: Settings, network: Network, *, lasts_with_process: bool = False) -> None:
        """`lasts_with_process`: the filter is taken away when the guard stops (inside `orchestrator
        run` on a host: nobody would keep it current after, and a Traefik started then would find
        every site closed to it). `orchestrator netguard` leaves it in place: a node whose guard
        restarts stays closed (fail closed)."""
        self._settings = settings
        self._network = network
        self._lasts_with_process = lasts_with_process
        self._task: asyncio.Task[None] | None = None
        self._written: dict[Path, tuple[int, str]] = {}  # namespace -> (its inode, the table) last written
        self._failing = ""
        self._node_table = ""  # the node's chain last written
        self._blocked_hosts = settings.registry_hosts()
        self._blocked_networks = [IPv4Network(n) for n in settings.network_guard_blocked]
        # The one opening: the database servers sites are handed, where they listen on a node.
        self._databases = database_ports(
            (server.site_host or server.host, server.site_port or server.port) for server in settings.database_servers
        )
        self.passes = 0  # passes that wrote a changed filter (for tests and the log)

    @property
    def problem(self) -> str:
        """Why the last pass failed; empty if it did not."""
        return self._failing and f"cannot filter the sites network: {self._failing}"

    async def run(self) -> None:
        nudged = asyncio.Event()
        loop = asyncio.get_running_loop()
        following: tuple[str, threading.Event] | None = None  # the network id followed, its stop
        try:
            while True:
                try:
                    network_id = await self._network.network_id()
                    if following is None or following[0] != network_id:  # first, or a network made anew
                        if following is not None:
                            following[1].set()
                        following = (network_id, threading.Event())
                        self._network.follow(network_id, functools.partial(_nudge, loop, nudged), following[1])
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
            if following is not None:
                following[1].set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def close(self) -> None:
        """Stop, and when the filter lasts with the process take it away: after the loop has
        stopped, so no pass of it writes the filter again behind us."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        if self._lasts_with_process:
            await self._take_away()

    async def _take_away(self) -> None:
        for namespace in self._written:
            try:
                await self._network.restore(namespace, open_table())
            except (FilterNotApplied, OSError) as exc:
                log.warning("the sites network's filter stays", extra=fields(namespace=str(namespace), error=str(exc)))
        self._written = {}
        try:
            await self._network.release_node(NODE_CHAIN)
        except (FilterNotApplied, OSError) as exc:
            log.warning("the node's chain stays", extra=fields(chain=NODE_CHAIN, error=str(exc)))

    async def sync(self, network_id: str) -> None:
        """One pass; FilterNotApplied (or Docker's errors) when the network is not filtered here."""
        nodes = await self._network.nodes(network_id, self._blocked_hosts)
        node_table = node_chain([*nodes, *self._blocked_networks], await self._network.trusted(), self._databases)
        if await self._network.guard_node(NODE_CHAIN, node_table) or node_table != self._node_table:
            log.info(
                "the nodes closed to sites' containers on their way out",
                extra=fields(chain=NODE_CHAIN, nodes=[str(n) for n in nodes]),
            )
        self._node_table = node_table
        edges, local = await self._network.endpoints(network_id)
        namespaces = self._network.namespaces(network_id)
        if not namespaces and local:
            raise FilterNotApplied(
                f"{local} containers are on the network here, but its namespace is not under {self._settings.netns_dir}"
            )
        table = filter_table(edges)
        written = {}
        for namespace in namespaces:
            try:
                inode = namespace.stat().st_ino
            except FileNotFoundError:
                continue  # gone meanwhile: the next pass looks again
            # Written at every pass, changed or not: whatever took it away (a guard of another
            # process stopping, an operator) is undone within a pass.
            if not await self._network.bridged_packets_filtered(namespace):
                raise FilterNotApplied(f"{namespace}: net.bridge.bridge-nf-call-iptables is off there")
            await self._network.restore(namespace, table)
            if self._written.get(namespace) != (inode, table):
                self.passes += 1
                log.info(
                    "sites network filtered: sites may not open connections on it",
                    extra=fields(network=self._network.name, namespace=str(namespace), edges=len(set(edges))),
                )
            written[namespace] = (inode, table)
        self._written = written
        if self._failing:
            log.info("sites network filtered again", extra=fields(network=self._network.name))
            self._failing = ""

    def _report(self, error: str) -> None:
        """Loud once per distinct failure: an unfiltered network is a security hole, not noise."""
        if error != self._failing:
            log.error(
                "cannot filter the sites network: sites can reach each other",
                extra=fields(network=self._network.name, error=error),
            )
            self._failing = error


def _nudge(loop: asyncio.AbstractEventLoop, nudged: asyncio.Event) -> None:
    """From the event stream's thread: wake the guard's loop."""
    loop.call_soon_threadsafe(nudged.set)
