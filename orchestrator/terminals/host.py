"""The Docker edge of terminal sessions: create, attach, resize and remove session containers, and
find them by label (only this deployment's: two deployments on one swarm keep their own)."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import docker
import docker.errors

from orchestrator.labels import DEPLOYMENT, MANAGED_BY, MANAGER, OWNER, SESSION, SITE_ID, managed
from orchestrator.swarm.client import DockerClient
from orchestrator.terminals.container import SessionContainer
from orchestrator_contract.sites import service_name

REMOVE_TRIES = 100


class TerminalHost:
    """Session containers on the orchestrator's own Docker engine, whichever node runs the site's
    task: it sees the sites root (shared storage, the same path on every site node), a container
    here can be attached to (a TTY stream), which a swarm task on another node cannot be, and the
    session's latency is one local attach, not a hop through another node."""

    def __init__(self, docker_client: DockerClient, network: str, deployment: str) -> None:
        self._docker = docker_client
        self._network = network
        self.deployment = deployment

    async def site_service(self, site_id: int) -> dict[str, Any] | None:
        """The `Spec` of the site's service, or None when the site has none (or was deleted)."""

        def read(api: docker.APIClient) -> dict[str, Any] | None:
            try:
                service = api.inspect_service(service_name(site_id))
            except docker.errors.NotFound:
                return None
            spec: dict[str, Any] = service["Spec"]
            return spec if spec.get("Labels", {}).get(MANAGED_BY) == MANAGER else None

        return await self._docker.run(read)

    async def start(self, container: SessionContainer, cols: int, rows: int) -> tuple[str, socket.socket]:
        """Create, attach (before start, so no output is missed) and start; the TTY's socket."""

        def start(api: docker.APIClient) -> tuple[str, socket.socket]:
            host_config = api.create_host_config(
                # A mount, not a bind: Docker refuses a missing source instead of creating it as root.
                mounts=[docker.types.Mount(container.workdir, container.site_dir, type="bind")],
                cap_drop=["ALL"],
                cap_add=list(container.cap_add) or None,
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs={"/tmp": "", "/run": ""},
                init=True,
                nano_cpus=container.nano_cpus,
                mem_limit=container.memory_bytes,
                pids_limit=container.pids_limit,
                cgroup_parent=container.cgroup_parent or None,
                network_mode=self._network,
                log_config={"Type": "none"},
            )

            def create() -> dict[str, Any]:
                created: dict[str, Any] = api.create_container(
                    container.image,
                    command=list(container.command),
                    user=container.user,
                    environment=container.env,
                    working_dir=container.workdir,
                    labels=container.labels,
                    tty=True,
                    stdin_open=True,
                    host_config=host_config,
                    name=container.name,
                )
                return created

            try:
                created = create()
            except docker.errors.ImageNotFound:
                # The site's task may run on another node, which pulled its image; this one pulls
                # it too (a custom image from the registry), once.
                api.pull(container.image)
                created = create()
            ident: str = created["Id"]
            try:
                attached = api.attach_socket(ident, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
                # Our own descriptor of the connection: the client's objects may close theirs.
                tty = attached._sock.dup()
                attached.close()
                api.start(ident)
                api.resize(ident, height=rows, width=cols)
            except BaseException:
                with contextlib.suppress(docker.errors.APIError):
                    api.remove_container(ident, force=True, v=True)
                raise
            return ident, tty

        return await self._docker.run(start)

    async def resize(self, container_id: str, cols: int, rows: int) -> None:
        await self._docker.run(lambda api: api.resize(container_id, height=rows, width=cols))

    async def remove(self, container_id: str) -> None:
        """Returns once the container is gone, also when another caller is removing it."""

        def remove(api: docker.APIClient) -> None:
            # v=True: an anonymous volume the site's image declares (VOLUME) goes with the session.
            for _ in range(REMOVE_TRIES):
                try:
                    api.remove_container(container_id, force=True, v=True)
                except docker.errors.NotFound:
                    return
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:  # 409: a removal already under way
                        raise
                    time.sleep(0.1)
                else:
                    return

        await self._docker.run(remove)

    async def sessions(self, site_id: int | None = None) -> list[tuple[str, str, str]]:
        """(container id, session id, owner) of this deployment's session containers, or of one site's."""
        wanted = managed(SESSION, f"{DEPLOYMENT}={self.deployment}")
        if site_id is not None:
            wanted["label"].append(f"{SITE_ID}={site_id}")

        def listing(api: docker.APIClient) -> list[tuple[str, str, str]]:
            found = api.containers(all=True, filters=wanted)
            labels = [(c["Id"], c["Labels"]) for c in found]
            return [(i, ls.get(SESSION, ""), ls.get(OWNER, "")) for i, ls in labels]

        return await self._docker.run(listing)

    async def close_site(self, site_id: int) -> int:
        """Remove the site's session containers; the process holding a session sees its TTY end
        and tells the owner `closed`."""
        found = await self.sessions(site_id)
        for container_id, _, _ in found:
            await self.remove(container_id)
        return len(found)
