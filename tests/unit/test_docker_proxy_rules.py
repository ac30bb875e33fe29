"""The read-only window on the Docker API that Traefik gets (traefik/docker_proxy.py): which
requests pass, and what Docker receives of them."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from orchestrator.traefik.docker_proxy import allowed, forwarded_head, narrowed, parse_head, scrub, scrubbed_answer

READS = [
    "/_ping",
    "/version",
    "/v1.41/version",
    "/v1.24/services",
    "/v1.41/services?filters=%7B%22label%22%3A%5B%22traefik.enable%3Dtrue%22%5D%7D",
    "/v1.41/tasks?filters=%7B%22service%22%3A%7B%22site_0001%22%3Atrue%7D%7D",
    "/v1.41/networks/director-sites",
    "/v1.41/nodes/abc123",
    "/v1.41/info",
]


@pytest.mark.parametrize("target", READS)
def test_what_the_swarm_provider_reads_passes(target: str) -> None:
    assert allowed("GET", target)
    assert allowed("HEAD", target)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/v1.41/containers/create"),
        ("POST", "/v1.41/services/create"),
        ("DELETE", "/v1.41/services/site_0001"),
        ("POST", "/v1.41/services/site_0001/update"),
        ("PUT", "/v1.41/version"),
        ("GET", "/v1.41/containers/json"),
        ("GET", "/v1.41/secrets"),
        ("GET", "/v1.41/configs"),
        ("GET", "/v1.41/swarm"),  # holds the join tokens
        ("GET", "/v1.41/events"),
        ("GET", "/v1.41/services/../secrets"),
        ("GET", "/v1.41/services/%2e%2e/secrets"),
        ("GET", "/v1.41/services%2F..%2Fsecrets"),
        ("GET", "/v1.41/services/x/logs"),
        ("GET", "/v1.41/tasks/x/logs"),
        ("GET", "http://docker/v1.41/services"),  # absolute-form: not what a socket client sends
        ("GET", "*"),
        ("CONNECT", "/v1.41/services"),
    ],
)
def test_everything_else_is_refused(method: str, target: str) -> None:
    assert not allowed(method, target)


def test_a_request_head_is_parsed() -> None:
    head = b"GET /v1.41/services HTTP/1.1\r\nHost: docker\r\nUser-Agent: Go-http-client/1.1\r\n\r\n"
    assert parse_head(head) == (
        "GET",
        "/v1.41/services",
        [("Host", "docker"), ("User-Agent", "Go-http-client/1.1")],
    )


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1.41/services HTTP/1.1\r\nContent-Length: 40\r\n\r\n",  # a body: a second request in disguise
        b"GET /v1.41/services HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /v1.41/services HTTP/2.0\r\n\r\n",
        b"GET  /v1.41/services HTTP/1.1\r\n\r\n",
        b"GET /v1.41/services HTTP/1.1\r\n Host: docker\r\n\r\n",  # obsolete line folding
        b"GET /v1.41/services HTTP/1.1\r\nHost docker\r\n\r\n",
        b"nonsense\r\n\r\n",
    ],
)
def test_heads_that_are_not_a_plain_read_are_refused(head: bytes) -> None:
    assert parse_head(head) is None


def test_docker_gets_one_request_that_closes_its_connection() -> None:
    forwarded = forwarded_head(
        "GET", "/v1.41/tasks", [("Host", "docker"), ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5")]
    )
    assert forwarded == b"GET /v1.41/tasks HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


def test_services_and_tasks_are_passed_on_without_their_containers_env() -> None:
    service = {"ID": "x",
               "Spec": {"Labels": {"a": "b"}, "TaskTemplate": {"ContainerSpec": {"Image": "i", "Env": ["K=secret"]}}},
               "PreviousSpec": {"TaskTemplate": {"ContainerSpec": {"Env": ["K=old"]}}}}  # fmt: skip
    task = {"Spec": {"ContainerSpec": {"Env": ["K=secret"], "Image": "i"}}}
    assert scrub([service, task]) == [
        {"ID": "x", "Spec": {"Labels": {"a": "b"}, "TaskTemplate": {"ContainerSpec": {"Image": "i"}}},
         "PreviousSpec": {"TaskTemplate": {"ContainerSpec": {}}}},
        {"Spec": {"ContainerSpec": {"Image": "i"}}},
    ]  # fmt: skip
    body = json.dumps([task]).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    answer = scrubbed_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nApi-Version: 1.41\r\n\r\n" + chunked)
    head, _, sent = answer.partition(b"\r\n\r\n")
    assert b"secret" not in answer and json.loads(sent) == [{"Spec": {"ContainerSpec": {"Image": "i"}}}]
    assert b"Transfer-Encoding" not in head and f"Content-Length: {len(sent)}".encode() in head
    assert scrubbed_answer(b"HTTP/1.1 200 OK\r\n\r\nnot json").startswith(b"HTTP/1.1 502")
    assert scrubbed_answer(b"HTTP/1.1 404 Not Found\r\n\r\n{}").startswith(b"HTTP/1.1 404")


@pytest.mark.parametrize(
    ("target", "labels"),
    [
        ("/v1.41/services", ["traefik.enable=true"]),
        ("/services?status=true", ["traefik.enable=true"]),
        ('/v1.41/services?filters={"label":["a=b"]}', ["a=b", "traefik.enable=true"]),
        ('/v1.41/services?filters={"label":{"a=b":true}}', {"a=b": True, "traefik.enable=true": True}),
        ("/v1.41/services?filters=not-json", ["traefik.enable=true"]),
    ],
)
def test_a_service_listing_asks_docker_for_traefiks_services_only(target: str, labels: object) -> None:
    asked = urlsplit(narrowed(target))
    query = dict(parse_qsl(asked.query))
    assert json.loads(query["filters"])["label"] == labels
    assert asked.path == urlsplit(target).path and allowed("GET", narrowed(target))
    if "status=true" in target:
        assert query["status"] == "true"


@pytest.mark.parametrize("target", ["/v1.41/services/site_0001", "/v1.41/tasks?filters={}", "/v1.41/nodes"])
def test_anything_but_a_service_listing_is_asked_as_it_is(target: str) -> None:
    assert narrowed(target) == target
