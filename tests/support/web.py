"""Requests through Traefik, as a site's visitor makes them."""

from __future__ import annotations

import httpx

from harness.stack import TRAEFIK
from harness.waiting import eventually


async def fetch(host: str, path: str = "/") -> httpx.Response:
    """A request through Traefik's loopback entrypoint with the site's Host header."""
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(f"{TRAEFIK}{path}", headers={"Host": host})


async def served(host: str, text: str, timeout: float = 30) -> str:
    """Wait until Traefik routes `host` and the page contains `text`; return the last answer."""
    last = ""

    async def ok() -> bool:
        nonlocal last
        try:
            response = await fetch(host)
        except httpx.HTTPError as exc:
            last = repr(exc)
            return False
        last = f"{response.status_code} {response.text[:200]!r}"
        return response.status_code == 200 and text in response.text

    try:
        await eventually(ok, timeout)
    except AssertionError:
        raise AssertionError(f"{host} not served with {text!r}; last answer: {last}") from None
    return last
