"""Routed means served: before `site.deployed`, check through Traefik that the site answers.

Two checks, until they hold or time runs out:
1. Traefik's API (when configured) lists exactly the current tasks as the site's servers, so a
   request can only reach the new version;
2. a request to the entrypoint with the site's Host header is answered by the site: it carries
   the router's `X-Served-By` mark (Traefik's own "no router" 404 does not) and is not one of
   Traefik's own gateway errors (which do).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx

from orchestrator.contract.results import Probe
from orchestrator.errors import NotRouted
from orchestrator.traefik.labels import SERVED_BY

# Traefik's own answers when it cannot reach a backend.
_GATEWAY_ERRORS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
PAUSE_SECONDS = 0.2


class TraefikRoutes:
    def __init__(self, entrypoint_url: str, api_url: str = "", request_timeout: float = 3.0) -> None:
        self.entrypoint = entrypoint_url.rstrip("/")
        self.api = api_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=request_timeout, follow_redirects=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def verify(self, name: str, host: str, servers: Sequence[str] | None, timeout: float) -> Probe:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                routed = servers is None or not self.api or await self._routes_to(name, set(servers))
                if routed is not True:
                    last = f"Traefik sends {name}'s requests to {routed or 'nobody'}, not to {sorted(servers or [])}"
                else:
                    probe = await self._request(name, host)
                    if isinstance(probe, Probe):
                        return probe
                    last = probe
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise NotRouted(f"{host} was not served by {name} through Traefik within {timeout:.0f}s: {last}")
            await asyncio.sleep(PAUSE_SECONDS)

    async def _routes_to(self, name: str, servers: set[str]) -> bool | list[str]:
        response = await self._client.get(f"{self.api}/api/http/services/{name}@swarm")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        found = sorted(s["url"] for s in response.json().get("loadBalancer", {}).get("servers", []))
        return True if set(found) == servers else found

    async def _request(self, name: str, host: str) -> Probe | str:
        started = time.perf_counter()
        response = await self._client.get(f"{self.entrypoint}/", headers={"Host": host})
        elapsed = (time.perf_counter() - started) * 1000
        if response.headers.get(SERVED_BY) != name:
            return f"{response.status_code} from Traefik, not from {name} (no router for {host} yet)"
        if _GATEWAY_ERRORS.get(response.status_code) == response.text.strip():
            return f"Traefik answered {response.status_code} {response.text.strip()}: the site did not"
        return Probe(url=self.entrypoint, host=host, status=response.status_code, duration_ms=round(elapsed, 1))
