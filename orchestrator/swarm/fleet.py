"""Every managed service at once, as operators' commands and the drift report see them: a survey
of what the swarm holds (live and previous specs mapped back, last task errors), and putting back
what was changed by hand, only while a service is still as surveyed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import docker.errors

from orchestrator.labels import VERSION, managed
from orchestrator.sites.service import Service
from orchestrator.swarm.cache import SwarmCache
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.mapping import (
    as_surveyed,
    from_docker,
    last_error,
    lost_running,
    service_of,
)

# Swarm's ids are random base-36 strings, and Docker's `id` filter matches their beginning.
ID_SLICES = tuple("0123456789abcdefghijklmnopqrstuvwxyz")


def managed_services(api: docker.APIClient, *, status: bool = True) -> Iterator[dict[str, Any]]:
    """Every managed service, asked of Docker a thirty-sixth at a time (by the first character of
    its id): a caller that keeps a little of each holds one slice's JSON at once, not the fleet's
    (10,000 services are tens of megabytes of specs, several times that parsed)."""
    for first in ID_SLICES:
        yield from api.services(filters={**managed(), "id": [first]}, status=status)


class ManagedServices:
    def __init__(self, docker_client: DockerClient, cache: SwarmCache) -> None:
        self._docker = docker_client
        self.cache = cache

    async def survey(self) -> list[Service]:
        """Every managed service as it is now and as it was before its last update (mapped back
        to specs), with its last task error."""

        def read(api: docker.APIClient) -> list[Service]:
            names = network_names(api)
            # Every task in one call, grouped here: a call per service would grow with the fleet.
            tasks: dict[str, list[dict[str, Any]]] = {}
            everything = api.tasks()
            for task in everything:
                tasks.setdefault(task.get("ServiceID", ""), []).append(task)
            down = {n["ID"] for n in api.nodes() if n.get("Status", {}).get("State") == "down"}
            lost = lost_running(t for t in everything if t.get("NodeID") in down)
            surveyed = []
            for raw in managed_services(api):
                previous = raw.get("PreviousSpec")
                surveyed.append(
                    service_of(
                        raw,
                        lost=lost[raw["ID"]],
                        last_error=last_error(tasks.get(raw["ID"], [])),
                        live=from_docker(raw["Spec"], names),
                        previous=from_docker(previous, names) if previous else None,
                    )
                )
            return surveyed

        return await self._docker.run(read)

    async def restore(self, surveyed: Service) -> bool:
        """Put back Docker's previous spec of the service (the applied one, before a hand edit),
        only if the service is still as surveyed; False when it changed since."""

        def restore(api: docker.APIClient) -> bool:
            raw = api.inspect_service(surveyed.name)
            previous = raw.get("PreviousSpec")
            if not previous or not as_surveyed(surveyed, raw, lambda: network_names(api)):
                return False
            # Docker refuses the write if anything changed in between ("update out of sequence").
            api.update_service(
                raw["ID"],
                raw["Version"]["Index"],
                name=previous["Name"],
                task_template=previous["TaskTemplate"],
                labels=previous.get("Labels"),
                mode=previous.get("Mode"),
                update_config=previous.get("UpdateConfig"),
                rollback_config=previous.get("RollbackConfig"),
                endpoint_spec=previous.get("EndpointSpec"),
            )
            return True

        self.cache.forget(surveyed.name)
        return await self._docker.run(restore)

    async def remove_if_unchanged(self, surveyed: Service) -> bool:
        """Remove the service only if it is still as surveyed (a site re-created since must not
        go); False when it changed."""

        def remove(api: docker.APIClient) -> bool:
            try:
                raw = api.inspect_service(surveyed.name)
                if not as_surveyed(surveyed, raw, lambda: network_names(api)):
                    return False
                api.remove_service(raw["ID"])  # the service compared, not whatever has its name by now
            except docker.errors.NotFound:
                return True
            return True

        self.cache.forget(surveyed.name)
        removed = await self._docker.run(remove)
        if removed:
            self.cache.claims.remove(surveyed.name)
        return removed

    async def reset_version(self, name: str) -> int | None:
        """Forget the version a site's service records (label set to 0, its tasks untouched), so
        the next event of any version applies; the version it had, or None without a service."""

        def reset(api: docker.APIClient) -> int | None:
            try:
                raw = api.inspect_service(name)
            except docker.errors.NotFound:
                return None
            labels = dict(raw["Spec"].get("Labels") or {})
            before = int(labels.get(VERSION, "0") or 0)
            labels[VERSION] = "0"
            api.update_service(raw["ID"], raw["Version"]["Index"], labels=labels, fetch_current_spec=True)
            return before

        self.cache.forget(name)
        return await self._docker.run(reset)


def network_names(api: docker.APIClient) -> dict[str, str]:
    return {n["Id"]: n["Name"] for n in api.networks()}
