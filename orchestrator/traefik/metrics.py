"""Traefik's Prometheus metrics (`metrics.prometheus` on its `traefik` entrypoint, answered on
`/metrics` to the control network only: deploy/traefik/dynamic.yml), read from every instance.

Production runs a Traefik per manager behind one DNS name (`traefik-control`, dnsrr): each counts
the requests it passed on, so every address the name resolves to is read, each keyed by its
address (`orchestrator.metrics.served` keeps their counters apart and adds their windows).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from urllib.parse import urlsplit, urlunsplit

import httpx

from orchestrator.logging_setup import fields
from orchestrator.traefik.routes import read_at_most

log = logging.getLogger("orchestrator.traefik")
# A thousand sites with traffic are a few MB of text; past this an answer is cut (and parsed as far as it got).
MAX_METRICS_BYTES = 64 * 1024 * 1024
MAX_INSTANCES = 16


class TraefikMetrics:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        """`url`: where one Traefik answers `/metrics`, e.g. http://traefik-control:8080/metrics."""
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def scrape(self) -> dict[str, str]:
        """Instance address -> its metrics text; an instance that does not answer is left out."""
        parts = urlsplit(self.url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await _addresses(host, port)
        texts = await asyncio.gather(*(self._one(host, a) for a in addresses))
        return {address: text for address, text in zip(addresses, texts, strict=True) if text is not None}

    async def _one(self, host: str, address: str) -> str | None:
        split = urlsplit(self.url)
        netloc = f"[{address}]" if ":" in address else address
        if split.port:
            netloc += f":{split.port}"
        url = urlunsplit(split._replace(netloc=netloc))
        try:
            async with self._client.stream("GET", url, headers={"Host": host}) as response:
                response.raise_for_status()
                return (await read_at_most(response, MAX_METRICS_BYTES)).decode(errors="replace")
        except httpx.HTTPError as exc:
            log.warning("Traefik's metrics unreadable", extra=fields(instance=address, error=repr(exc)[:200]))
            return None


async def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        log.warning("Traefik's address does not resolve", extra=fields(host=host, error=str(exc)))
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))[:MAX_INSTANCES]
