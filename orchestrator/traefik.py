"""The Traefik label set of a site service: the one place router rules are written.

Traefik's swarm provider reads *service* labels. The rule is built from `Hostname` values only,
which `hostnames.parse_hostname` guarantees hold nothing but [a-z0-9.-] (and a leading ``*.``).
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.hostnames import Hostname, parse_hostname


def router_rule(hosts: Sequence[Hostname]) -> str:
    if not hosts:
        raise ValueError("a router needs at least one host")
    terms = []
    for host in hosts:
        if not isinstance(host, Hostname) or parse_hostname(host) != host:
            raise TypeError("router rules are built from validated Hostname values only")
        if host.is_wildcard:
            # Traefik's Host() takes no wildcards; one label of letters, digits and hyphens instead.
            suffix = host[2:].replace(".", r"\.")
            terms.append(f"HostRegexp(`^[a-z0-9-]+\\.{suffix}$`)")
        else:
            terms.append(f"Host(`{host}`)")
    return " || ".join(terms)


def labels(*, router: str, hosts: Sequence[Hostname], network: str, port: int, entrypoint: str) -> dict[str, str]:
    """Labels that make Traefik route `hosts` on `entrypoint` to port `port` of the service's tasks."""
    return {
        "traefik.enable": "true",
        f"traefik.http.routers.{router}.rule": router_rule(hosts),
        f"traefik.http.routers.{router}.entrypoints": entrypoint,
        f"traefik.http.routers.{router}.service": router,
        f"traefik.http.services.{router}.loadbalancer.server.port": str(port),
        "traefik.swarm.network": network,
    }
