"""Who may open a connection on the sites network: the rule set for one node. Pure.

Sites share one overlay network with Traefik (per-site networks that Traefik joins do not scale:
see docs/limits.md). What keeps a site from reaching another site's task
on any port, Traefik's API or anything else on that network is a packet filter in the network's
own namespace on each node: Docker bridges every local endpoint of the network (`br0`) with the
VXLAN device that carries traffic to and from other nodes, and the kernel passes bridged packets
through that namespace's iptables FORWARD chain. The rule is default deny:

- replies of an allowed connection pass (conntrack);
- the edge (containers labelled `director.edge=true`: Traefik) may open connections;
- traffic arriving from another node (`vxlan0`) passes: that node's own filter checked it where it
  was sent from, so every node that runs sites runs the guard;
- everything else is dropped: a site opening a connection to anything on the network.

The nodes are the other way round a site could go. Its traffic to any address but the sites
network leaves through Docker's `docker_gwbridge` (a site's way out), and from there it would reach
what listens on its own node and, routed (and masqueraded, as every node does for that bridge), on
every other node: Swarm's ports (2377, 7946), the registry, and VXLAN's UDP 4789, where a crafted
datagram holding the sites network's VNI comes out of `vxlan0` on the other node's sites network
as if that node's overlay had sent it, past the filter above. `node_chain` closes that on every node:
jumped to from INPUT and from FORWARD, for everything that arrives from `docker_gwbridge`:

- Swarm's own ports (VXLAN, gossip, raft) are dropped whatever the destination and the sender;
- replies of an allowed connection pass, and so do the stack's own containers on this node (not a
  site's task or a container the orchestrator made for a site: `is_site_container`);
- `exceptions` pass (what sites may reach on purpose, e.g. a database server: one rule each);
- everything for this node itself, or for another node, the registry or an operator's blocked
  network, is dropped.

A site starting before the guard has seen it is already covered (it is not an edge); an edge
starting is refused until the guard has seen it (Traefik answers 502 for that moment), which is
the safe way round.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from orchestrator.labels import EDGE, MANAGED_BY, MANAGER, SWARM_SERVICE_NAME

CHAIN = "DIRECTOR-SITES"
NODE_CHAIN = "DIRECTOR-NODE"  # in the node's own filter table, jumped to from INPUT and FORWARD
SITES_EGRESS = "docker_gwbridge"  # the bridge by which containers on overlay networks go out
_SITE_TASK = re.compile(r"site_[0-9]+")  # orchestrator_contract.sites.service_name
OVERLAY_PORT = "vxlan0"  # Docker's name for the overlay's VXLAN device in the network's namespace
# Swarm's ports on every node (Docker's "open these between nodes"): no container has business there.
SWARM_UDP_PORTS = (4789, 7946)  # VXLAN, gossip
SWARM_TCP_PORTS = (2377, 7946)  # cluster management (raft), gossip


def is_edge(labels: dict[str, str] | None) -> bool:
    """Whether a container may open connections to sites. A container's labels include its
    image's, and a site may run an image of its own making: a site's task is never an edge,
    whatever it says (Swarm writes the service name label over the image's)."""
    found = labels or {}
    if _SITE_TASK.fullmatch(found.get(SWARM_SERVICE_NAME, "")):
        return False
    return found.get(EDGE, "").lower() == "true"


def is_site_container(labels: dict[str, str] | None) -> bool:
    """A site's task, or a container the orchestrator made for a site (a terminal, a build): what
    `node_chain` keeps off the nodes. Both labels are written by Swarm or the orchestrator over
    whatever the image says."""
    found = labels or {}
    return found.get(MANAGED_BY) == MANAGER or bool(_SITE_TASK.fullmatch(found.get(SWARM_SERVICE_NAME, "")))


def filter_table(edges: Iterable[IPv4Address]) -> str:
    """The whole `filter` table of the network's namespace, for `iptables-restore` (which replaces
    it at once: no moment without rules, and applying it twice changes nothing). Docker keeps
    nothing of its own in that table."""
    return "\n".join(
        [
            "*filter",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD ACCEPT [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            f":{CHAIN} - [0:0]",
            f"-A FORWARD -j {CHAIN}",
            f"-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            f"-A {CHAIN} -m physdev --physdev-in {OVERLAY_PORT} -j RETURN",
            *(f"-A {CHAIN} -s {address}/32 -j RETURN" for address in sorted(set(edges))),
            f"-A {CHAIN} -j DROP",
            "COMMIT",
            "",
        ]
    )


def database_ports(servers: Iterable[tuple[str, int]]) -> list[tuple[IPv4Address, int]]:
    """The (address, port) of each database server as sites reach it, where that is an IPv4
    address (a name is resolved elsewhere, and is no address of this node's)."""
    found = []
    for host, port in servers:
        try:
            found.append((IPv4Address(host), port))
        except ValueError:
            continue
    return found


def open_table() -> str:
    """The namespace's filter table as Docker leaves it: nothing filtered (a guard taking its
    filter away)."""
    return "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT", ""])


def node_chain(
    nodes: Iterable[IPv4Address | IPv4Network] = (),
    trusted: Iterable[IPv4Address] = (),
    exceptions: Iterable[tuple[IPv4Address | IPv4Network, int]] = (),
) -> str:
    """`NODE_CHAIN` for `iptables-restore --noflush` in the node's own namespace (the chain alone,
    replaced at once: the rest of that table is Docker's and the operator's), jumped to from INPUT
    and FORWARD. `nodes`: the other nodes' addresses and whatever else sites may not reach (the
    registry, an operator's networks); `trusted`: this node's containers on `SITES_EGRESS` that are
    not a site's; `exceptions`: (address, TCP port) sites may open connections to."""
    rule = f"-A {NODE_CHAIN}"
    return "\n".join(
        [
            "*filter",
            f":{NODE_CHAIN} - [0:0]",
            f"{rule} ! -i {SITES_EGRESS} -j RETURN",
            f"{rule} -p udp -m multiport --dports {','.join(map(str, SWARM_UDP_PORTS))} -j DROP",
            f"{rule} -p tcp -m multiport --dports {','.join(map(str, SWARM_TCP_PORTS))} -j DROP",
            f"{rule} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            *(f"{rule} -s {address}/32 -j RETURN" for address in sorted(set(trusted))),
            *(
                f"{rule} -d {_net(address)} -p tcp --dport {port} -j RETURN"
                for address, port in sorted(set(exceptions))
            ),
            f"{rule} -m addrtype --dst-type LOCAL,BROADCAST,MULTICAST -j DROP",
            *(f"{rule} -d {_net(address)} -j DROP" for address in sorted(set(map(_as_network, nodes)))),
            "COMMIT",
            "",
        ]
    )


def _as_network(address: IPv4Address | IPv4Network) -> IPv4Network:
    return IPv4Network(address)


def _net(address: IPv4Address | IPv4Network) -> str:
    return str(IPv4Network(address))
