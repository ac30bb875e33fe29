"""Telling the site's own answer from Traefik's: a stand-in Traefik (httpx's mock transport)
answers as the real one does; the integration tests check the real Traefik."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from orchestrator.errors import NotRouted
from orchestrator.traefik.routes import TraefikRoutes

NAME = "site_0001"
SERVERS = ["http://10.0.1.5:80"]


def traefik(answer: httpx.Response, servers: list[str] = SERVERS) -> TraefikRoutes:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/http/services/"):
            return httpx.Response(200, json={"loadBalancer": {"servers": [{"url": u} for u in servers]}})
        assert request.headers["host"] == "a.example.com"
        return answer

    routes = TraefikRoutes("http://traefik", "http://traefik-api")
    routes._client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return routes


async def test_the_sites_own_answer_is_served_even_a_404() -> None:
    probe = await traefik(httpx.Response(404, headers={"X-Served-By": NAME}, text="no index")).verify(
        NAME, "a.example.com", SERVERS, timeout=1
    )
    assert probe.status == 404 and probe.host == "a.example.com"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, text="404 page not found\n"),  # no router for the host yet
        httpx.Response(502, headers={"X-Served-By": NAME}, text="Bad Gateway"),  # router, no live task
        httpx.Response(200, headers={"X-Served-By": "site_0002"}, text="another site"),
    ],
    ids=["no router", "bad gateway", "another site"],
)
async def test_traefiks_own_answers_are_not_served(answer: httpx.Response) -> None:
    with pytest.raises(NotRouted):
        await traefik(answer).verify(NAME, "a.example.com", SERVERS, timeout=0.3)


def redirecting_traefik(secure: httpx.Response, https_address: str = "traefik:8443") -> TraefikRoutes:
    """A name with a certificate: Traefik's own redirect router answers plain HTTP (no mark), and
    `secure` is what the HTTPS entrypoint answers (SNI: the name)."""

    def plain(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/http/services/"):
            return httpx.Response(200, json={"loadBalancer": {"servers": [{"url": u} for u in SERVERS]}})
        return httpx.Response(301, headers={"Location": "https://a.example.com:8443/"})

    def tls(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://traefik:8443/"
        assert request.headers["host"] == "a.example.com"
        assert request.extensions["sni_hostname"] == "a.example.com"
        return secure

    routes = TraefikRoutes("http://traefik", "http://traefik-api", https_address=https_address)
    routes._client = httpx.AsyncClient(transport=httpx.MockTransport(plain))
    routes._tls_client = httpx.AsyncClient(transport=httpx.MockTransport(tls))
    return routes


async def test_a_name_redirected_to_https_is_served_when_the_site_answers_there() -> None:
    """An update of a site whose names have certificates: plain HTTP is Traefik's redirect, the
    site answers on the HTTPS entrypoint (a deploy failed `not_routed` when this was missed)."""
    routes = redirecting_traefik(httpx.Response(200, headers={"X-Served-By": NAME}))
    probe = await routes.verify(NAME, "a.example.com", SERVERS, timeout=1)
    assert probe.status == 200 and probe.url == "https://traefik:8443"


@pytest.mark.parametrize(
    "secure",
    [
        httpx.Response(404, text="404 page not found\n"),
        httpx.Response(301, headers={"Location": "https://a.example.com/"}),
    ],
    ids=["no TLS router", "redirected again"],
)
async def test_a_redirect_is_not_served_unless_the_site_answers_on_https(secure: httpx.Response) -> None:
    with pytest.raises(NotRouted):
        await redirecting_traefik(secure).verify(NAME, "a.example.com", SERVERS, timeout=0.3)


async def test_a_redirect_is_not_followed_without_an_https_entrypoint() -> None:
    with pytest.raises(NotRouted, match="no HTTPS entrypoint"):
        await redirecting_traefik(httpx.Response(200), https_address="").verify(
            NAME, "a.example.com", SERVERS, timeout=0.3
        )


async def test_a_redirect_elsewhere_is_traefiks_own_answer_not_the_sites() -> None:
    answer = httpx.Response(301, headers={"Location": "https://b.example.com/"})  # not the name asked for
    with pytest.raises(NotRouted, match="301 from Traefik"):
        await traefik(answer).verify(NAME, "a.example.com", SERVERS, timeout=0.3)


async def test_old_tasks_still_in_traefiks_pool_are_not_yet_served() -> None:
    routes = traefik(httpx.Response(200, headers={"X-Served-By": NAME}), servers=["http://10.0.1.4:80", *SERVERS])
    with pytest.raises(NotRouted, match=r"10\.0\.1\.4"):
        await routes.verify(NAME, "a.example.com", SERVERS, timeout=0.3)


class Endless(httpx.AsyncByteStream):
    """A hostile site's body: megabytes without end, or a byte a second."""

    def __init__(self, chunk: bytes, pause: float = 0.0) -> None:
        self.chunk, self.pause, self.sent = chunk, pause, 0

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        while True:
            if self.pause:
                await asyncio.sleep(self.pause)
            self.sent += len(self.chunk)
            yield self.chunk


async def test_an_endless_body_is_never_read() -> None:
    body = Endless(b"\0" * 65536)
    probe = await traefik(httpx.Response(200, headers={"X-Served-By": NAME}, stream=body)).verify(
        NAME, "a.example.com", SERVERS, timeout=1
    )
    assert probe.status == 200 and body.sent <= 65536


async def test_an_endless_gateway_error_is_read_only_its_first_bytes() -> None:
    body = Endless(b"Bad Gateway" * 10000)
    probe = await traefik(httpx.Response(502, headers={"X-Served-By": NAME}, stream=body)).verify(
        NAME, "a.example.com", SERVERS, timeout=1
    )
    assert probe.status == 502  # longer than Traefik's own: the site's own error page
    assert body.sent == 110000  # one chunk looked at, the rest never read


async def test_a_trickled_answer_cannot_hold_the_check_past_its_deadline() -> None:
    body = Endless(b"B", pause=60.0)  # a byte a minute: only the deadline ends the check soon
    started = time.monotonic()
    with pytest.raises(NotRouted):
        await traefik(httpx.Response(502, headers={"X-Served-By": NAME}, stream=body)).verify(
            NAME, "a.example.com", SERVERS, timeout=0.5
        )
    assert time.monotonic() - started < 10.0
