"""The swarm's nodes, as draining one needs them (`commands.drain`)."""

from __future__ import annotations

import docker

from orchestrator.labels import managed
from orchestrator.sites.service import Service
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.mapping import service_of


class Nodes:
    def __init__(self, docker_client: DockerClient) -> None:
        self._docker = docker_client

    async def set_availability(self, node: str, availability: str) -> None:
        """`active`, `pause` (nothing new is placed there) or `drain` (its tasks move away)."""

        def update(api: docker.APIClient) -> None:
            raw = api.inspect_node(node)
            api.update_node(raw["ID"], raw["Version"]["Index"], {**raw["Spec"], "Availability": availability})

        await self._docker.run(update)

    async def sites_on(self, node: str) -> list[Service]:
        """The managed services with a task meant to run on the node (by id or host name)."""

        def read(api: docker.APIClient) -> list[Service]:
            node_id = api.inspect_node(node)["ID"]
            here = {t["ServiceID"] for t in api.tasks(filters={"node": node_id, "desired-state": "running"})}
            if not here:
                return []
            # Those services only (the swarm's `id` filter), not a listing of the whole fleet.
            listed = api.services(filters={**managed(), "id": sorted(here)}, status=True)
            return [service_of(s) for s in listed if s["ID"] in here]

        return await self._docker.run(read)
