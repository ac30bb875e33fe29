"""Which of a stack's services are not yet healthy (scripts/stack.sh `wait`), from Docker's API.

    python3 scripts/stack_health.py STACK SERVICE...

Prints one `service:why` line per service that is not, nothing when all are. Healthy: no update in
progress, and the service's running containers are exactly its desired number of tasks, each of the
service's current spec and healthy. Counting healthy containers is not enough: right after `docker
stack deploy` changed a service, its old containers are still running and healthy, and the update
has not yet begun. Standard library only (the host's python3), one process and four API calls a
look, where the docker command line cost a process and a call per figure.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from typing import Any
from urllib.parse import quote

DOCKER_SOCKET = "/var/run/docker.sock"
API = "/v1.41"  # Docker 20.10: services' task counts (`status`)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _get(connection: http.client.HTTPConnection, path: str, filters: dict[str, list[str]]) -> Any:
    connection.request("GET", f"{API}{path}{'&' if '?' in path else '?'}filters={quote(json.dumps(filters))}")
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"docker {path}: {response.status} {body[:200]!r}")
    return json.loads(body)


def _template(spec: dict[str, Any]) -> dict[str, Any]:
    """A task's copy of its service's template, as the API shows both: the service's alone says
    its `Runtime`."""
    return {k: v for k, v in spec.items() if k != "Runtime"}


def not_healthy(
    stack: str,
    wanted: list[str],
    services: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    running: list[dict[str, Any]],
    healthy: set[str],
) -> list[str]:
    """Pure: `service:why` for each of `wanted` (names without the stack's prefix) that is not healthy.
    `running`: the stack's running containers; `healthy`: the ids of those Docker calls healthy."""
    by_name = {s["Spec"]["Name"]: s for s in services}
    out = []
    for name in wanted:
        service = by_name.get(f"{stack}_{name}")
        if service is None:
            out.append(f"{name}:missing")
            continue
        state = (service.get("UpdateStatus") or {}).get("State", "")
        if state in ("updating", "rollback_started"):
            out.append(f"{name}:{state}")
            continue
        desired = int((service.get("ServiceStatus") or {}).get("DesiredTasks") or 0)
        current = {
            t["Status"]["ContainerStatus"]["ContainerID"]
            for t in tasks
            if t["ServiceID"] == service["ID"]
            and t["Status"].get("State") == "running"
            and _template(t.get("Spec") or {}) == _template(service["Spec"]["TaskTemplate"])
            and (t["Status"].get("ContainerStatus") or {}).get("ContainerID")
        }
        mine = {c["Id"] for c in running if c["Labels"].get("com.docker.swarm.service.id") == service["ID"]}
        good = mine & current & healthy
        if len(good) != desired or mine != good:
            stale = len(mine - current)
            out.append(f"{name}:{len(good)}/{desired}" + (f" (+{stale} old)" if stale else ""))
    return out


def main(argv: list[str]) -> int:
    stack, wanted = argv[0], argv[1:]
    connection = _UnixConnection(DOCKER_SOCKET)
    namespace = [f"com.docker.stack.namespace={stack}"]
    services = _get(connection, "/services?status=true", {"label": namespace})
    tasks = _get(connection, "/tasks", {"desired-state": ["running"]})
    running = _get(connection, "/containers/json", {"label": namespace})
    healthy = {c["Id"] for c in _get(connection, "/containers/json", {"label": namespace, "health": ["healthy"]})}
    for line in not_healthy(stack, wanted, services, tasks, running, healthy):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
