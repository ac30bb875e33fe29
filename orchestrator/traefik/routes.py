"""Routed means served: before `site.deployed`, check through Traefik that the site answers.

Two checks, until they hold or time runs out:
1. Traefik's API (when configured) lists exactly the current tasks as the site's servers, so a
   request can only reach the new version;
2. a request to the entrypoint with the site's Host header is answered by the site: it carries
   the router's `X-Served-By` mark (Traefik's own "no router" 404 does not) and is not one of
   Traefik's own gateway errors (which do). A name with a certificate is redirected to HTTPS by
   Traefik itself (the redirect router of its certificate's file: traefik/certificates.py), so
   there, as a browser would, the request is made again on the HTTPS entrypoint, where the site's
   TLS router must answer it. Which certificate Traefik presents is the issuer's check, not this.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import httpx

from orchestrator.errors import NotRouted
from orchestrator.traefik.labels import SERVED_BY
from orchestrator_contract.results import Probe

# Traefik's own answers when it cannot reach a backend.
_GATEWAY_ERRORS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
PAUSE_SECONDS = 0.2
# What is read of an answer: enough for Traefik's own gateway errors ("Bad Gateway"), never a
# site's page; and of Traefik's API, one service's servers.
PEEK_BYTES = 64
MAX_API_BYTES = 1024 * 1024
# Traefik's redirect of a name to HTTPS (not the site's own: that carries the site's mark).
_TO_HTTPS = "redirected to HTTPS by Traefik"


class TraefikRoutes:
    def __init__(
        self, entrypoint_url: str, api_url: str = "", request_timeout: float = 3.0, https_address: str = ""
    ) -> None:
        """`https_address`: "host:port" of the HTTPS entrypoint (empty: a redirect is not followed)."""
        self.entrypoint = entrypoint_url.rstrip("/")
        self.api = api_url.rstrip("/")
        self.https = f"https://{https_address}" if https_address else ""
        self._client = httpx.AsyncClient(timeout=request_timeout, follow_redirects=False)
        # The name is sent as SNI; the certificate is not checked here (routing is).
        self._tls_client = httpx.AsyncClient(timeout=request_timeout, follow_redirects=False, verify=False)

    async def close(self) -> None:
        await self._client.aclose()
        await self._tls_client.aclose()

    async def verify(self, name: str, host: str, servers: Sequence[str] | None, timeout: float) -> Probe:
        """One deadline for the whole check, whatever the site answers (an endless or trickled body
        cannot hold the caller past it)."""
        last = "no answer yet"
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        routed = servers is None or not self.api or await self._routes_to(name, set(servers))
                        if routed is not True:
                            wanted = sorted(servers or [])
                            last = f"Traefik sends {name}'s requests to {routed or 'nobody'}, not to {wanted}"
                        else:
                            probe = await self._request(name, host)
                            if isinstance(probe, Probe):
                                return probe
                            last = probe
                    except (httpx.HTTPError, ValueError) as exc:
                        last = f"{type(exc).__name__}: {str(exc)[:200]}"
                    await asyncio.sleep(PAUSE_SECONDS)
        except TimeoutError:
            raise NotRouted(f"{host} was not served by {name} through Traefik within {timeout:.0f}s: {last}") from None

    async def _routes_to(self, name: str, servers: set[str]) -> bool | list[str]:
        async with self._client.stream("GET", f"{self.api}/api/http/services/{name}@swarm") as response:
            if response.status_code == 404:
                return []
            response.raise_for_status()
            listing = json.loads(await read_at_most(response, MAX_API_BYTES))
        found = sorted(s["url"] for s in listing.get("loadBalancer", {}).get("servers", []))
        return True if set(found) == servers else found

    async def _request(self, name: str, host: str) -> Probe | str:
        answer = await self._ask(self._client, self.entrypoint, name, host)
        if answer == _TO_HTTPS:
            if not self.https:
                return f"Traefik redirects {host} to HTTPS, and no HTTPS entrypoint is configured to follow"
            answer = await self._ask(self._tls_client, self.https, name, host)
            if answer == _TO_HTTPS:
                return f"Traefik redirects {host} to HTTPS on its HTTPS entrypoint too"
        return answer

    async def _ask(self, client: httpx.AsyncClient, url: str, name: str, host: str) -> Probe | str:
        """The site's answer is only looked at, never read whole: its status and headers, and the
        first bytes of a gateway error (Traefik's own are a few bytes long)."""
        started = time.perf_counter()
        extensions = {"sni_hostname": host} if url.startswith("https:") else {}
        async with client.stream("GET", f"{url}/", headers={"Host": host}, extensions=extensions) as response:
            elapsed = (time.perf_counter() - started) * 1000
            if response.headers.get(SERVED_BY) != name:
                if response.is_redirect and _https_of(response.headers.get("location", ""), host):
                    return _TO_HTTPS  # Traefik's own redirect of a name with a certificate
                return f"{response.status_code} from Traefik, not from {name} (no router for {host} yet)"
            gateway = _GATEWAY_ERRORS.get(response.status_code)
            if gateway is not None:
                text = (await read_at_most(response, PEEK_BYTES)).decode(errors="replace").strip()
                if text == gateway:
                    return f"Traefik answered {response.status_code} {gateway}: the site did not"
        return Probe(url=url, host=host, status=response.status_code, duration_ms=round(elapsed, 1))


def _https_of(location: str, host: str) -> bool:
    try:
        url = httpx.URL(location)
    except httpx.InvalidURL:
        return False
    return url.scheme == "https" and url.host == host


async def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The body's first `limit` bytes (then the response is closed without reading the rest)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return bytes(body[:limit])
