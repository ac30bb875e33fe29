"""The network guard's rule set (pure) and when it writes it (a fake network namespace)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from orchestrator.config import Settings
from orchestrator.netguard.guard import NetworkGuard
from orchestrator.netguard.network import FilterNotApplied
from orchestrator.netguard.rules import (
    CHAIN,
    NODE_CHAIN,
    database_ports,
    filter_table,
    is_edge,
    is_site_container,
    node_chain,
    open_table,
)
from orchestrator_contract.sites import service_name

TRAEFIK, OTHER = IPv4Address("10.0.1.3"), IPv4Address("10.0.1.9")
MANAGER, WORKER = IPv4Address("198.18.213.1"), IPv4Address("198.18.213.12")
STACK_CONTAINER = IPv4Address("172.18.0.3")  # this node's Traefik on docker_gwbridge


def rules(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith(f"-A {CHAIN}")]


def test_only_replies_other_nodes_and_the_edge_pass_and_everything_else_is_dropped() -> None:
    table = filter_table([OTHER, TRAEFIK, TRAEFIK])
    assert table.startswith("*filter\n") and table.endswith("COMMIT\n")
    assert f"-A FORWARD -j {CHAIN}" in table.splitlines()
    assert rules(table) == [
        f"-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {CHAIN} -m physdev --physdev-in vxlan0 -j RETURN",
        f"-A {CHAIN} -s 10.0.1.3/32 -j RETURN",  # sorted and once each: the same table every time
        f"-A {CHAIN} -s 10.0.1.9/32 -j RETURN",
        f"-A {CHAIN} -j DROP",
    ]


def test_with_no_edge_nothing_on_the_network_may_open_a_connection() -> None:
    assert rules(filter_table([]))[-2:] == [
        f"-A {CHAIN} -m physdev --physdev-in vxlan0 -j RETURN",
        f"-A {CHAIN} -j DROP",
    ]


def test_only_an_explicit_true_label_makes_an_edge() -> None:
    assert is_edge({"director.edge": "true"}) and is_edge({"director.edge": "True"})
    assert is_edge({"director.edge": "true", "com.docker.swarm.service.name": "director_traefik"})
    assert not is_edge({"director.edge": "1"}) and not is_edge({}) and not is_edge(None)


def test_a_site_task_is_never_an_edge_whatever_its_image_says() -> None:
    # `LABEL director.edge=true` in a custom image reaches the container's labels.
    assert not is_edge({"director.edge": "true", "com.docker.swarm.service.name": service_name(42)})
    assert not is_edge({"director.edge": "true", "com.docker.swarm.service.name": service_name(123456)})


class FakeNetwork:
    name = "director-sites"

    def __init__(self, netns_dir: Path) -> None:
        self.netns_dir = netns_dir
        self.edge_addresses = [TRAEFIK]
        self.local = 2  # containers of this node on the network
        self.bridge_filtering = True
        self.written: list[tuple[Path, str]] = []
        self.node_chains: list[tuple[str, str]] = []
        self.node_addresses = [MANAGER, WORKER]
        self.asked_hosts: list[str] = []
        self.released: list[str] = []

    async def network_id(self) -> str:
        return "kekxtnvqmwo6ozsvukm74yivc"

    def forget(self) -> None:
        pass

    def namespaces(self, network_id: str) -> list[Path]:
        return sorted(self.netns_dir.glob(f"*-{network_id[:10]}"))

    async def endpoints(self, network_id: str) -> tuple[list[IPv4Address], int]:
        return list(self.edge_addresses), self.local

    async def bridged_packets_filtered(self, namespace: Path) -> bool:
        return self.bridge_filtering

    async def restore(self, namespace: Path, table: str) -> None:
        self.written.append((namespace, table))

    async def nodes(self, network_id: str, hosts: Iterable[str]) -> list[IPv4Address]:
        self.asked_hosts = list(hosts)
        return list(self.node_addresses)

    async def trusted(self) -> list[IPv4Address]:
        return [STACK_CONTAINER]

    async def guard_node(self, chain: str, table: str) -> bool:
        self.node_chains.append((chain, table))
        return True

    async def release_node(self, chain: str) -> None:
        self.released.append(chain)

    def follow(self, network_id: str, nudge: Callable[[], None], stopped: threading.Event) -> None:
        self.followed = network_id


async def test_the_filter_is_written_at_every_pass_and_follows_the_edge_and_the_namespace(tmp_path: Path) -> None:
    network = FakeNetwork(tmp_path)
    guard = NetworkGuard(Settings(), network)
    network_id = await network.network_id()
    namespace = tmp_path / f"1-{network_id[:10]}"

    network.local = 0
    await guard.sync(network_id)
    assert network.written == [] and guard.problem == ""  # nothing of the network on this node

    namespace.touch()
    network.local = 2
    await guard.sync(network_id)
    await guard.sync(network_id)
    # Again at every pass (whatever took it away meanwhile is undone), counted as a change once.
    assert network.written == [(namespace, filter_table([TRAEFIK]))] * 2 and guard.passes == 1

    network.edge_addresses = [OTHER]  # Traefik restarted elsewhere on the network
    await guard.sync(network_id)
    assert network.written[-1] == (namespace, filter_table([OTHER])) and guard.passes == 2

    namespace.unlink()  # the last endpoint left; Docker made it anew under another epoch
    again = tmp_path / f"2-{network_id[:10]}"
    again.touch()
    await guard.sync(network_id)
    assert network.written[-1] == (again, filter_table([OTHER])) and guard.passes == 3
    # The node's chain at every pass too, naming the nodes the engine knows now (and opening the
    # database servers' ports).
    databases = database_ports((s.site_host or s.host, s.site_port or s.port) for s in Settings().database_servers)
    assert network.node_chains[0] == (NODE_CHAIN, node_chain([MANAGER, WORKER], [STACK_CONTAINER], databases))
    assert len(network.node_chains) == 5 and network.asked_hosts == ["198.18.213.1"]  # the registry's
    network.node_addresses = [MANAGER]  # the worker left the swarm
    await guard.sync(network_id)
    assert network.node_chains[-1] == (NODE_CHAIN, node_chain([MANAGER], [STACK_CONTAINER], databases))


async def test_a_guard_inside_the_orchestrator_takes_its_filter_away_when_it_stops(tmp_path: Path) -> None:
    network = FakeNetwork(tmp_path)
    namespace = tmp_path / f"1-{(await network.network_id())[:10]}"
    namespace.touch()
    for lasts_with_process, last_table in ((True, open_table()), (False, filter_table([TRAEFIK]))):
        guard = NetworkGuard(Settings(), network, lasts_with_process=lasts_with_process)
        guard.start()
        for _ in range(200):  # its first pass
            if guard.passes:
                break
            await asyncio.sleep(0.01)
        await guard.close()
        assert network.written[-1] == (namespace, last_table)  # `netguard` alone leaves it: fail closed
    assert network.released == [NODE_CHAIN]  # the node's chain too, by the one inside the orchestrator


async def test_a_network_it_cannot_filter_is_a_problem_not_a_quiet_pass(tmp_path: Path) -> None:
    network = FakeNetwork(tmp_path)
    guard = NetworkGuard(Settings(), network)
    network_id = await network.network_id()
    with pytest.raises(FilterNotApplied, match="not under"):  # containers here, no namespace found
        await guard.sync(network_id)
    (tmp_path / f"1-{network_id[:10]}").touch()
    network.bridge_filtering = False
    with pytest.raises(FilterNotApplied, match="bridge-nf-call-iptables"):
        await guard.sync(network_id)
    assert network.written == []


def test_the_nodes_are_closed_to_what_containers_on_the_sites_way_out_open() -> None:
    """Jumped to from INPUT (this node) and FORWARD (other nodes, routed): Swarm's ports are
    dropped for anyone anywhere (a crafted VXLAN datagram to another node's 4789 would come out on
    its sites network); the stack's own containers and replies pass; this node, the other nodes and
    blocked networks are closed to everything else, but for an exception's one rule."""
    database = (IPv4Address("198.18.213.1"), 5432)
    table = node_chain([WORKER, MANAGER, IPv4Network("10.20.0.0/16"), WORKER], [STACK_CONTAINER], [database])
    assert table.splitlines()[1:] == [
        f":{NODE_CHAIN} - [0:0]",
        f"-A {NODE_CHAIN} ! -i docker_gwbridge -j RETURN",
        f"-A {NODE_CHAIN} -p udp -m multiport --dports 4789,7946 -j DROP",
        f"-A {NODE_CHAIN} -p tcp -m multiport --dports 2377,7946 -j DROP",
        f"-A {NODE_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {NODE_CHAIN} -s 172.18.0.3/32 -j RETURN",
        f"-A {NODE_CHAIN} -d 198.18.213.1/32 -p tcp --dport 5432 -j RETURN",
        f"-A {NODE_CHAIN} -m addrtype --dst-type LOCAL,BROADCAST,MULTICAST -j DROP",
        f"-A {NODE_CHAIN} -d 10.20.0.0/16 -j DROP",
        f"-A {NODE_CHAIN} -d 198.18.213.1/32 -j DROP",
        f"-A {NODE_CHAIN} -d 198.18.213.12/32 -j DROP",
        "COMMIT",
    ]


def test_a_site_task_or_a_container_made_for_a_site_is_never_trusted_on_the_way_out() -> None:
    assert is_site_container({"com.docker.swarm.service.name": service_name(7)})
    assert is_site_container({"com.director.managed-by": "orchestrator", "com.director.terminal-session": "x"})
    assert not is_site_container({"com.docker.swarm.service.name": "director_orchestrator"})
    assert not is_site_container(None)


def test_the_node_lets_sites_reach_their_database_servers_and_nothing_else() -> None:
    opened = database_ports([("198.18.213.1", 5432), ("198.18.213.1", 3306), ("db.example.com", 5432)])
    assert opened == [(IPv4Address("198.18.213.1"), 5432), (IPv4Address("198.18.213.1"), 3306)]
    rules = node_chain([IPv4Address("198.18.213.1")], [], opened).splitlines()
    opening = rules.index(f"-A {NODE_CHAIN} -d 198.18.213.1/32 -p tcp --dport 3306 -j RETURN")
    assert rules[opening + 1] == f"-A {NODE_CHAIN} -d 198.18.213.1/32 -p tcp --dport 5432 -j RETURN"
    assert rules.index(f"-A {NODE_CHAIN} -d 198.18.213.1/32 -j DROP") > opening + 1  # the rest of the node stays shut
