"""Telling the site's own answer from Traefik's: a stand-in Traefik (httpx's mock transport)
answers as the real one does; the integration tests check the real Traefik."""

from __future__ import annotations

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


async def test_old_tasks_still_in_traefiks_pool_are_not_yet_served() -> None:
    routes = traefik(httpx.Response(200, headers={"X-Served-By": NAME}), servers=["http://10.0.1.4:80", *SERVERS])
    with pytest.raises(NotRouted, match=r"10\.0\.1\.4"):
        await routes.verify(NAME, "a.example.com", SERVERS, timeout=0.3)
