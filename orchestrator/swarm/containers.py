"""The site task containers of one Docker engine (the node a collector runs on), for metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass

import docker

from orchestrator.labels import SWARM_SERVICE_NAME
from orchestrator.swarm.client import DockerClient

SITE_SERVICE = re.compile(r"site_[0-9]{4,10}")


@dataclass(frozen=True, slots=True)
class Task:
    """A site task's container on this engine."""

    container_id: str
    name: str  # the container's name: Docker's events carry it
    service: str  # site_0042 (names are unique in a swarm)
    created: float  # epoch seconds
    # Its main process in the engine's pid namespace (the node's), 0 unknown: the way into its
    # network namespace for a collector that sees no pid in the task's cgroup.procs (one in a
    # container of its own, as every swarm service is: swarm offers no host pid namespace).
    pid: int = 0


class NodeContainers:
    def __init__(self, docker_client: DockerClient) -> None:
        self._docker = docker_client
        self._pids: dict[str, int] = {}  # container id -> its main process, for the containers listed last

    async def identity(self) -> tuple[str, str]:
        """(the swarm's id of this node, its host name)."""
        info = await self._docker.run(lambda api: api.info())
        swarm = info.get("Swarm") or {}
        return str(swarm.get("NodeID") or info.get("ID") or ""), str(info.get("Name") or "")

    async def site_tasks(self) -> list[Task]:
        """The running site tasks, each with its main process: one listing, and an inspection of
        each container the last listing did not have (a listing carries no pid)."""
        known = self._pids

        def listing(api: docker.APIClient) -> list[Task]:
            found = []
            for container in api.containers(filters={"label": SWARM_SERVICE_NAME, "status": "running"}):
                labels = container.get("Labels") or {}
                service = labels.get(SWARM_SERVICE_NAME, "")
                names = container.get("Names") or []
                if not (SITE_SERVICE.fullmatch(service) and names):
                    continue
                pid = known.get(container["Id"])
                if pid is None:
                    try:
                        pid = int((api.inspect_container(container["Id"]).get("State") or {}).get("Pid") or 0)
                    except docker.errors.NotFound:
                        continue  # ended since the listing
                found.append(
                    Task(
                        container_id=container["Id"],
                        name=names[0].lstrip("/"),
                        service=service,
                        created=float(container.get("Created") or 0),
                        pid=pid,
                    )
                )
            return found

        tasks = await self._docker.run(listing)
        self._pids = {task.container_id: task.pid for task in tasks}
        return tasks
