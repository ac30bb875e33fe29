"""Traefik's window on Docker (`orchestrator docker-proxy`, traefik/docker_proxy.py) against the
real Engine: the swarm provider's reads pass, without any container's environment (a site's
secrets); a write, a read of anything else and a second request smuggled on a kept-alive
connection never reach Docker."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import docker
import pytest
from support import ROOT, scope, service

from orchestrator.config import Settings

NETWORK = Settings().network


@pytest.fixture(scope="module")
def proxy() -> Iterator[tuple[str, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "docker-proxy", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the proxy did not start"
                time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=10)


def exchange(address: tuple[str, int], raw: bytes) -> bytes:
    """Send `raw` on one connection and read until the proxy closes it."""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(raw)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n".encode()


def body(answer: bytes) -> bytes:
    head, _, rest = answer.partition(b"\r\n\r\n")
    if b"chunked" not in head.lower():
        return rest
    out = b""
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        out, rest = out + rest[: int(size, 16)], rest[int(size, 16) + 2 :]
    return out


SECRET = "s3cret-database-password"


def _service(api: docker.APIClient, name: str, labels: dict[str, str]) -> Iterator[str]:
    spec = docker.types.ContainerSpec("director/base:latest", ["true"], env={"DB_PASSWORD": SECRET})
    # On this engine: a test cluster's workers may be up beside this test (.ci/run), and drained or killed.
    task = docker.types.TaskTemplate(
        spec,
        restart_policy=docker.types.RestartPolicy("none"),
        placement=docker.types.Placement(constraints=["node.role == manager"]),
    )
    mode = docker.types.ServiceMode("replicated", 1)
    created = api.create_service(task, name=f"{name}-{scope.NAME}", mode=mode, labels=labels)
    try:
        yield created["ID"]
    finally:
        api.remove_service(created["ID"])


@pytest.fixture
def a_service(api: docker.APIClient) -> Iterator[str]:
    """A service of this test's own for Traefik, with a secret in its env, and one task that runs once."""
    yield from _service(api, "proxy-read", {"traefik.enable": "true"})


@pytest.fixture
def not_traefiks(api: docker.APIClient) -> Iterator[str]:
    """A service no Traefik router is made of (a site that does not serve has no Traefik labels)."""
    yield from _service(api, "proxy-hidden", {})


def test_the_swarm_providers_reads_reach_docker(
    proxy: tuple[str, int], api: docker.APIClient, a_service: str, not_traefiks: str
) -> None:
    network = exchange(proxy, get(f"/v1.41/networks/{NETWORK}"))
    assert network.startswith(b"HTTP/1.1 200 OK"), network[:200]
    assert json.loads(body(network))["Name"] == NETWORK
    # Other test workers create and remove services meanwhile: the listing holds this test's
    # service and every service for Traefik there both just before and just after it, and nothing
    # else but services made and gone in between; never a service without Traefik's label.
    for_traefik = {"label": "traefik.enable=true"}
    before = {s["ID"] for s in api.services(filters=for_traefik)}
    services = exchange(proxy, get("/v1.41/services"))
    after = {s["ID"] for s in api.services(filters=for_traefik)}
    assert services.startswith(b"HTTP/1.1 200 OK"), services[:200]
    listed = {s["ID"] for s in json.loads(body(services))}
    assert a_service in listed and before & after <= listed, (listed, before, after)
    assert not_traefiks not in listed
    assert all(service(api, extra) is None for extra in listed - before - after), (listed, before, after)
    version = exchange(proxy, get("/v1.41/version"))
    assert json.loads(body(version))["ApiVersion"] == api.version()["ApiVersion"]


def test_services_and_tasks_are_read_without_any_containers_env(
    proxy: tuple[str, int], api: docker.APIClient, a_service: str
) -> None:
    """Round four: `/services` and `/tasks` returned every site's `Env` (its secrets) to Traefik."""
    tasks_of = f"/v1.41/tasks?filters=%7B%22service%22%3A%5B%22{a_service}%22%5D%7D"
    deadline = time.monotonic() + 20
    while not json.loads(body(exchange(proxy, get(tasks_of)))):
        assert time.monotonic() < deadline, "no task of the service"
        time.sleep(0.2)
    assert SECRET in json.dumps(api.inspect_service(a_service))  # Docker itself has it
    for path in ("/v1.41/services", f"/v1.41/services/{a_service}", tasks_of, "/v1.41/tasks"):
        answer = exchange(proxy, get(path))
        assert answer.startswith(b"HTTP/1.1 200 OK"), (path, answer[:200])
        assert SECRET.encode() not in answer and b'"Env"' not in answer, path
    listed = json.loads(body(exchange(proxy, get(f"/v1.41/services/{a_service}"))))
    assert listed["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith("director/base")  # the rest is there


def test_a_write_never_reaches_docker(proxy: tuple[str, int], api: docker.APIClient) -> None:
    spec = json.dumps({"Image": "director/base:latest", "Cmd": ["true"], "HostConfig": {"Privileged": True}})
    name = f"escape-{scope.NAME}"  # other workers start containers meanwhile: look for this one only
    answer = exchange(
        proxy,
        f"POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\n".encode()
        + f"Content-Type: application/json\r\nContent-Length: {len(spec)}\r\n\r\n{spec}".encode(),
    )
    assert answer.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400")), answer[:200]
    assert api.containers(all=True, filters={"name": f"^/{name}$"}) == []


@pytest.mark.parametrize("path", ["/v1.41/containers/json", "/v1.41/swarm", "/v1.41/secrets", "/v1.41/services/x/logs"])
def test_other_reads_are_refused(proxy: tuple[str, int], path: str) -> None:
    assert exchange(proxy, get(path)).startswith(b"HTTP/1.1 403 Forbidden")


def test_a_second_request_on_a_kept_alive_connection_is_never_forwarded(proxy: tuple[str, int]) -> None:
    smuggled = get("/v1.41/version").replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n") + get(
        "/v1.41/containers/json?all=1"
    )
    answer = exchange(proxy, smuggled)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.count(b"HTTP/1.1 ") == 1  # one answer, then the connection ends
    assert b'"Image"' not in answer  # no container listing
