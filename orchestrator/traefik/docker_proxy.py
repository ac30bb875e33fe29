"""What Traefik may see of Docker: a read-only window on the Engine API.

Traefik's swarm provider only reads (the Engine's version, services, tasks, networks, nodes), but
a Docker socket answers anything: whoever holds it can start a privileged container and owns
every node. `orchestrator docker-proxy` sits between the two: it listens on a network only Traefik
shares (`compose.yaml`) and forwards a request to the socket only when `allowed` says so, one
request per connection (a `Connection: close` of our own, so a kept-alive connection cannot carry
an unchecked second request). Everything else is answered 403 and never reaches Docker.

What Docker answers about services and tasks is passed on without their containers' environment
(`scrub`): a site's env holds its secrets, and the swarm provider reads labels, never env. A listing
of services is asked of Docker for those labelled `traefik.enable=true` only (`narrowed`): the
swarm provider lists the tasks of every service it is given, one call each, every refresh, and a
site that does not serve has no such label (`sites.spec`): a fleet of thousands mostly idle sites
costs Traefik and Docker what its serving sites cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

log = logging.getLogger(__name__)

# GET (and HEAD) of these collections and their items, with or without the API version prefix;
# query strings (filters) are free. No /containers, /exec, /images, /volumes, /secrets, /configs,
# /swarm, /plugins, /events (the swarm provider polls), and no writes of any kind.
READABLE = re.compile(
    r"/(?:v1\.\d{1,3}/)?(?:_ping|version|info|services|tasks|networks|nodes)(?:/[A-Za-z0-9][A-Za-z0-9_.-]{0,127})?/?"
)
HEAD_LIMIT = 16 * 1024  # bytes of request line and headers
HEAD_TIMEOUT = 10.0  # seconds for a client to send them
MAX_CONNECTIONS = 64  # at once; Traefik needs a handful
MAX_ANSWER = 64 * 1024 * 1024  # bytes of one answer of Docker's that is scrubbed (every service's spec)
# Answers that carry containers' specs: services and tasks, listed or one by one.
SCRUBBED = re.compile(r"/(?:v1\.\d{1,3}/)?(?:services|tasks)(?:/[^/]+)?/?")


# A listing of every service (not one service by id or name).
SERVICE_LISTING = re.compile(r"/(?:v1\.\d{1,3}/)?services/?")
FOR_TRAEFIK = "traefik.enable=true"


def allowed(method: str, target: str) -> bool:
    """Pure: may a request `METHOD target` reach Docker? Only reads of what the swarm provider needs."""
    if method not in ("GET", "HEAD") or not target.startswith("/"):
        return False
    path = urlsplit(target).path
    # A percent-encoded slash or dot must not smuggle another path past the pattern.
    return unquote(path) == path and READABLE.fullmatch(path) is not None


def narrowed(target: str) -> str:
    """Pure: a service listing as Docker gets it: with a `label=traefik.enable=true` filter added
    to the client's own (Docker's filters are ANDed); any other target as it is."""
    parts = urlsplit(target)
    if not SERVICE_LISTING.fullmatch(parts.path):
        return target
    query = parse_qsl(parts.query, keep_blank_values=True)
    filters: dict[str, Any] = {}
    for key, value in query:
        if key == "filters":
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            filters = parsed if isinstance(parsed, dict) else {}
    labels = filters.get("label")
    if isinstance(labels, dict):  # the old form: {"label": {"k=v": true}}
        filters["label"] = {**labels, FOR_TRAEFIK: True}
    else:
        filters["label"] = [*(labels if isinstance(labels, list) else []), FOR_TRAEFIK]
    kept = [(key, value) for key, value in query if key != "filters"]
    query_text = urlencode([*kept, ("filters", json.dumps(filters, separators=(",", ":")))])
    return parts._replace(query=query_text).geturl()


def parse_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]] | None:
    """Pure: (method, target, headers) of an HTTP/1.1 request head, or None if it is not one a
    client without a body sends."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.append((name, value.strip()))
    names = {name.lower() for name, _ in headers}
    if "transfer-encoding" in names or any(n.lower() == "content-length" and v != "0" for n, v in headers):
        return None  # reads carry no body: one would be a second request in disguise
    return method, target, headers


def forwarded_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """Pure: the request as Docker gets it: the client's headers but its own connection ones, and
    `Connection: close`, so Docker ends the connection after one answer."""
    hop = {"connection", "keep-alive", "proxy-connection", "upgrade"}
    kept = [f"{name}: {value}" for name, value in headers if name.lower() not in hop]
    return "\r\n".join([f"{method} {target} HTTP/1.1", *kept, "Connection: close", "", ""]).encode("latin-1")


def scrub(document: Any) -> Any:
    """Pure: a service's or a task's JSON (or a list of them) without any container spec's `Env`."""
    if isinstance(document, list):
        return [scrub(item) for item in document]
    if isinstance(document, dict):
        return {
            key: scrub(value) if key != "ContainerSpec" or not isinstance(value, dict) else _without_env(value)
            for key, value in document.items()
        }
    return document


def _without_env(spec: dict[str, Any]) -> dict[str, Any]:
    return {key: scrub(value) for key, value in spec.items() if key != "Env"}


def scrubbed_answer(answer: bytes) -> bytes:
    """Pure: Docker's whole answer (it closes the connection after it) with `scrub` applied to a
    JSON body, sent with its length; an answer that is not HTTP or not JSON is a 502, never the
    unscrubbed body."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not sep or not lines[0].startswith("HTTP/1."):
        return refusal("502 Bad Gateway", "docker's answer was not HTTP\n")
    headers = [line for line in lines[1:] if line]
    framing = ("transfer-encoding", "content-length")
    if any(h.lower().startswith("transfer-encoding:") and "chunked" in h.lower() for h in headers):
        body = _dechunked(body)
    if lines[0].split(" ")[1:2] == ["200"]:
        try:
            body = json.dumps(scrub(json.loads(body)), separators=(",", ":")).encode()
        except ValueError:
            return refusal("502 Bad Gateway", "docker's answer was not JSON\n")
    kept = [h for h in headers if h.partition(":")[0].strip().lower() not in framing]
    return "\r\n".join([lines[0], *kept, f"Content-Length: {len(body)}", "", ""]).encode("latin-1") + body


def _dechunked(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def refusal(status: str, why: str) -> bytes:
    body = why.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


class DockerProxy:
    def __init__(self, docker_socket: str) -> None:
        self._socket = docker_socket
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._handle, host, port, limit=HEAD_LIMIT)
        log.info("docker proxy listening", extra={"listen": f"{host}:{port}", "docker": self._socket})
        async with server:
            await server.serve_forever()

    async def serve_unix(self, path: str) -> None:
        """On a unix socket (a Traefik on this node that mounts it)."""
        server = await asyncio.start_unix_server(self._handle, path, limit=HEAD_LIMIT)
        log.info("docker proxy listening", extra={"listen": f"unix:{path}", "docker": self._socket})
        async with server:
            await server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._slots.locked():
                writer.write(refusal("503 Service Unavailable", "too many connections\n"))
                return
            async with self._slots:
                await self._one_request(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # the client went away or sent too much: nothing reached Docker
        finally:
            with contextlib.suppress(OSError):
                writer.close()
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(HEAD_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        request = parse_head(head)
        if request is None:
            writer.write(refusal("400 Bad Request", "not a plain read request\n"))
            return
        method, target, headers = request
        if not allowed(method, target):
            log.warning("docker proxy refused", extra={"method": method, "target": target[:200]})
            writer.write(refusal("403 Forbidden", "this Docker API is read-only\n"))
            return
        docker_reader, docker_writer = await asyncio.open_unix_connection(self._socket)
        try:
            docker_writer.write(forwarded_head(method, narrowed(target), headers))
            await docker_writer.drain()
            if method == "GET" and SCRUBBED.fullmatch(urlsplit(target).path):
                answer = bytearray()
                while chunk := await docker_reader.read(64 * 1024):
                    answer += chunk
                    if len(answer) > MAX_ANSWER:
                        writer.write(refusal("502 Bad Gateway", "docker's answer is too large to scrub\n"))
                        return
                writer.write(scrubbed_answer(bytes(answer)))
                await writer.drain()
                return
            while chunk := await docker_reader.read(64 * 1024):
                writer.write(chunk)
                await writer.drain()
        finally:
            docker_writer.close()
