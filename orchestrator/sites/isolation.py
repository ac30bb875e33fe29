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

The node itself is the other way round a site could go: its traffic to the node's own addresses
leaves through Docker's `docker_gwbridge` (a site's way out), and there it would reach what
listens on the node (Swarm's ports; a VXLAN packet sent to the node's UDP 4789 would come out of
`vxlan0` on the sites network as if from another node; the local registry). `node_chain` drops what
a container on that bridge opens to the node: sites need nothing of it.

A site starting before the guard has seen it is already covered (it is not an edge); an edge
starting is refused until the guard has seen it (Traefik answers 502 for that moment), which is
the safe way round.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Address

EDGE_LABEL = "director.edge"  # "true" on the containers that may open connections to sites
CHAIN = "DIRECTOR-SITES"
NODE_CHAIN = "DIRECTOR-NODE"  # in the node's own filter table, jumped to from INPUT
SITES_EGRESS = "docker_gwbridge"  # the bridge by which containers on overlay networks go out
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
_SITE_TASK = re.compile(r"site_[0-9]+")  # contract.sites.service_name
OVERLAY_PORT = "vxlan0"  # Docker's name for the overlay's VXLAN device in the network's namespace


def is_edge(labels: dict[str, str] | None) -> bool:
    """Whether a container may open connections to sites. A container's labels include its
    image's, and a site may run an image of its own making: a site's task is never an edge,
    whatever it says (Swarm writes the service name label over the image's)."""
    found = labels or {}
    if _SITE_TASK.fullmatch(found.get(SERVICE_NAME_LABEL, "")):
        return False
    return found.get(EDGE_LABEL, "").lower() == "true"


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


def open_table() -> str:
    """The namespace's filter table as Docker leaves it: nothing filtered (a guard taking its
    filter away)."""
    return "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT", ""])


def node_chain() -> str:
    """`NODE_CHAIN` for `iptables-restore --noflush` in the node's own namespace (the chain alone:
    the rest of that table is Docker's and the operator's): replies pass, nothing else a container
    on `SITES_EGRESS` opens to the node itself."""
    return "\n".join(
        [
            "*filter",
            f":{NODE_CHAIN} - [0:0]",
            f"-A {NODE_CHAIN} -i {SITES_EGRESS} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            f"-A {NODE_CHAIN} -i {SITES_EGRESS} -j DROP",
            "COMMIT",
            "",
        ]
    )
