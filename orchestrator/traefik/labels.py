"""The Traefik label set of a site service: the one place router rules are written.

Traefik's swarm provider reads *service* labels. The rule is built from `Hostname` values only,
which `hostnames.parse_hostname` guarantees hold nothing but [a-z0-9.-] (and a leading ``*.``).
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator_contract.hostnames import Hostname, parse_hostname

# Set on every answer a site's router passes on, so the orchestrator can tell the site's own
# answer from Traefik's "no router" 404 (Traefik also sets it on its 502 for the router).
SERVED_BY = "X-Served-By"
RETRY_ATTEMPTS = 3


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


def labels(
    *,
    router: str,
    hosts: Sequence[Hostname],
    network: str,
    port: int,
    entrypoint: str,
    priority: int,
    tls_entrypoint: str,
    hsts_seconds: int = 0,
) -> dict[str, str]:
    """Labels that make Traefik route `hosts` on `entrypoint` (plain HTTP) and `tls_entrypoint`
    (HTTPS, with whichever certificate Traefik holds for each name) to port `port` of the
    service's tasks.

    The priority is fixed (Traefik's default is the rule's length, which a site could grow with
    domains to outrank another router). Retries carry a request over to another task when the
    one it picked is gone (a connection refused during a switch-over). Plain HTTP of a name goes
    to HTTPS once its certificate is served: that redirect comes with the certificate (see
    `traefik.certificates`), so a name without one keeps being served over HTTP.
    """
    mark, retry, secure = f"{router}-mark", f"{router}-retry", f"{router}-tls"
    rule = router_rule(hosts)
    middlewares = f"{mark},{retry}"
    found = {
        "traefik.enable": "true",
        f"traefik.http.routers.{router}.rule": rule,
        f"traefik.http.routers.{router}.entrypoints": entrypoint,
        f"traefik.http.routers.{router}.priority": str(priority),
        f"traefik.http.routers.{router}.service": router,
        f"traefik.http.routers.{router}.middlewares": middlewares,
        f"traefik.http.routers.{secure}.rule": rule,
        f"traefik.http.routers.{secure}.entrypoints": tls_entrypoint,
        f"traefik.http.routers.{secure}.priority": str(priority),
        f"traefik.http.routers.{secure}.service": router,
        f"traefik.http.routers.{secure}.tls": "true",
        f"traefik.http.routers.{secure}.middlewares": middlewares,
        f"traefik.http.middlewares.{mark}.headers.customresponseheaders.{SERVED_BY}": router,
        f"traefik.http.middlewares.{retry}.retry.attempts": str(RETRY_ATTEMPTS),
        f"traefik.http.middlewares.{retry}.retry.initialinterval": "50ms",
        f"traefik.http.services.{router}.loadbalancer.server.port": str(port),
        "traefik.swarm.network": network,
    }
    if hsts_seconds:
        hsts = f"{router}-hsts"
        found[f"traefik.http.middlewares.{hsts}.headers.stsseconds"] = str(hsts_seconds)
        found[f"traefik.http.routers.{secure}.middlewares"] = f"{middlewares},{hsts}"
    return found


def probe_host(hosts: Sequence[Hostname]) -> str:
    """A host name that the site's rule matches, to request through Traefik."""
    host = next((h for h in hosts if not h.is_wildcard), hosts[0])
    return f"orchestrator-probe.{host[2:]}" if host.is_wildcard else str(host)
