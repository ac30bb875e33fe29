"""The sites network on this node, as the network guard sees it: which local containers sit on it
(Docker), where its namespace is, and its packet filter (iptables-restore run inside that
namespace through nsenter). What the filter says is decided in `netguard.rules`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, ip_address, ip_interface
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from orchestrator.logging_setup import fields
from orchestrator.netguard.rules import SITES_EGRESS, is_edge, is_site_container
from orchestrator.swarm.client import DockerClient

log = logging.getLogger("orchestrator.netguard")
RESTORE_TIMEOUT = 10.0
HOOKS = ("INPUT", "FORWARD")  # the built-in chains that jump to the node's chain, first


class FilterNotApplied(Exception):
    """The rules could not be written (no privilege, no iptables, a namespace gone meanwhile)."""


class SitesNetwork:
    def __init__(self, docker_client: DockerClient, name: str, netns_dir: Path, docker_url: str) -> None:
        self._docker = docker_client
        self._docker_url = docker_url  # the event stream's own connection
        self.name = name
        self._netns_dir = netns_dir
        self._id = ""

    async def network_id(self) -> str:
        if not self._id:
            self._id = str((await self._docker.run(lambda api: api.inspect_network(self.name)))["Id"])
        return self._id

    def forget(self) -> None:
        """The network may have been removed and made again under a new id."""
        self._id = ""

    def follow(self, network_id: str, nudge: Callable[[], None], stopped: threading.Event) -> None:
        """`follow_connects` in a thread of its own, until `stopped` is set."""
        threading.Thread(
            target=follow_connects,
            args=(self._docker_url, network_id, nudge, stopped),
            name="netguard-events",
            daemon=True,
        ).start()

    def namespaces(self, network_id: str) -> list[Path]:
        """The network's namespaces on this node. libnetwork names an overlay network's namespace
        "<epoch>-" + the network id's first ten characters, under the engine's exec-root
        (`--exec-root`, /var/run/docker by default); the epoch is 1 unless it made it anew."""
        return sorted(self._netns_dir.glob(f"*-{network_id[:10]}"))

    async def endpoints(self, network_id: str) -> tuple[list[IPv4Address], int]:
        """Addresses on the network of this node's containers that are the edge, and how many
        containers of this node are on it."""

        def listed(api: docker.APIClient) -> tuple[list[IPv4Address], int]:
            containers = api.containers(filters={"network": network_id})
            found = []
            for container in containers:
                if not is_edge(container.get("Labels")):
                    continue
                for attached in ((container.get("NetworkSettings") or {}).get("Networks") or {}).values():
                    if attached.get("NetworkID") == network_id and attached.get("IPAddress"):
                        found.append(ip_interface(attached["IPAddress"]).ip)
            return [address for address in found if isinstance(address, IPv4Address)], len(containers)

        return await self._docker.run(listed)

    async def bridged_packets_filtered(self, namespace: Path) -> bool:
        """Whether the kernel passes the namespace's bridged packets through its iptables (Docker
        turns it on for its networks): without it the filter would see nothing."""
        setting = "/proc/sys/net/bridge/bridge-nf-call-iptables"
        output = await _run("nsenter", f"--net={namespace}", "cat", setting)
        return output.strip() == "1"

    async def restore(self, namespace: Path, table: str) -> None:
        """Replace the namespace's filter table with `table`, at once."""
        await _run("nsenter", f"--net={namespace}", "iptables-restore", stdin=table)

    async def nodes(self, network_id: str, hosts: Iterable[str]) -> list[IPv4Address]:
        """Every node address this engine knows (its own, the managers', on a manager every node's,
        the network's peers) and the addresses `hosts` resolve to (the registry's, say)."""

        def known(api: docker.APIClient) -> set[str]:
            swarm = api.info().get("Swarm") or {}
            found = {swarm.get("NodeAddr") or ""}
            found |= {str(m.get("Addr", "")).rpartition(":")[0] for m in swarm.get("RemoteManagers") or []}
            if swarm.get("ControlAvailable"):
                for node in api.nodes():
                    found.add((node.get("Status") or {}).get("Addr") or "")
                    found.add(str((node.get("ManagerStatus") or {}).get("Addr", "")).rpartition(":")[0])
            with contextlib.suppress(docker.errors.NotFound):
                found |= {p.get("IP") or "" for p in api.inspect_network(network_id, verbose=True).get("Peers") or []}
            return found

        found = await self._docker.run(known)
        for host in hosts:
            found |= await asyncio.to_thread(_resolved, host)
        return sorted(a for a in map(_ipv4, found) if a is not None and not (a.is_loopback or a.is_unspecified))

    async def trusted(self) -> list[IPv4Address]:
        """Addresses on `SITES_EGRESS` of this engine's containers that are not a site's."""

        def listed(api: docker.APIClient) -> list[IPv4Address]:
            try:
                attached = api.inspect_network(SITES_EGRESS).get("Containers") or {}
            except docker.errors.NotFound:
                return []  # no container on an overlay network here yet
            labels = {c["Id"]: c.get("Labels") for c in api.containers()}
            return [
                ip_interface(endpoint["IPv4Address"]).ip  # type: ignore[misc]
                for container_id, endpoint in attached.items()
                if container_id in labels
                and not is_site_container(labels[container_id])
                and endpoint.get("IPv4Address")
            ]

        return await self._docker.run(listed)

    async def guard_node(self, chain: str, table: str) -> bool:
        """Write `chain` (`table`, for `iptables-restore --noflush`: that chain alone, replaced at
        once) into this process's own filter table, and jump to it first from INPUT and FORWARD
        where no jump is (True: a jump was added)."""
        await _run("iptables-restore", "--noflush", stdin=table)
        added = False
        for hook in HOOKS:
            try:
                await _run("iptables", "-C", hook, "-j", chain)
            except FilterNotApplied:
                await _run("iptables", "-I", hook, "1", "-j", chain)
                added = True
        return added

    async def release_node(self, chain: str) -> None:
        """`chain` and its jumps out of this process's own filter table."""
        for hook in HOOKS:
            with contextlib.suppress(FilterNotApplied):
                while True:
                    await _run("iptables", "-D", hook, "-j", chain)
        await _run("iptables", "-F", chain)
        await _run("iptables", "-X", chain)


def _ipv4(text: str) -> IPv4Address | None:
    try:
        address = ip_address(text.strip("[]"))
    except ValueError:
        return None
    return address if isinstance(address, IPv4Address) else None


def _resolved(host: str) -> set[str]:
    """The IPv4 addresses `host` names (an address, or a name resolved now; none if it does not)."""
    if not host:
        return set()
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)}
    except OSError:
        return set()


async def _run(*command: str, stdin: str = "") -> str:
    """`command`'s output; FilterNotApplied unless it exits 0 within RESTORE_TIMEOUT."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise FilterNotApplied(f"cannot run {command[0]}: {exc}") from exc
    try:
        async with asyncio.timeout(RESTORE_TIMEOUT):
            out, err = await process.communicate(stdin.encode())
    except TimeoutError as exc:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise FilterNotApplied(f"{command[0]} did not finish") from exc
    if process.returncode:
        raise FilterNotApplied(
            err.decode(errors="replace").strip()[-500:] or f"{command[0]}: exit {process.returncode}"
        )
    return out.decode(errors="replace")[-4096:]


def follow_connects(base_url: str, network_id: str, nudge: Callable[[], None], stopped: threading.Event) -> None:
    """Call `nudge` whenever a container joins the network on this engine, and after every
    (re)connection of the stream (anything may have joined meanwhile). Blocks: run it in a thread.
    Only a nudge: the guard reads the whole state again, so a lost event costs nothing."""
    pause = 0.5
    while not stopped.is_set():
        try:
            api = docker.APIClient(base_url=base_url, version="auto", timeout=None)
            stream = api.events(
                decode=True, filters={"type": ["network"], "event": ["connect"], "network": [network_id]}
            )
            nudge()
            pause = 0.5
            for _ in stream:
                nudge()
                if stopped.is_set():
                    return
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            if stopped.is_set():
                return
            log.warning("network event stream lost; reconnecting", extra=fields(error=str(exc), retry_in=pause))
        stopped.wait(pause)
        pause = min(pause * 2, 5.0)
