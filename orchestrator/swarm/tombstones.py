"""Delete tombstones: a deleted site's last version, kept in the swarm itself as a config
(`orchestrator-tombstone-site_0001-v7`), so a late, older event cannot resurrect the site.

Each carries when it may go (`com.director.expires`): a delete can only be overtaken by events
that were already on their way (redeliveries, delayed retries), so a tombstone need not outlive
them; housekeeping removes expired ones, so deletes of ids that never existed cannot pile up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors

from orchestrator.labels import EXPIRES, MANAGED_BY, MANAGER, SITE_ID, TOMBSTONE, VERSION, managed, version_of
from orchestrator.sites.rollout import timestamp
from orchestrator.swarm.client import DockerClient
from orchestrator_contract.sites import service_name

TOMBSTONE_PREFIX = "orchestrator-tombstone-"


class Tombstones:
    def __init__(self, docker_client: DockerClient) -> None:
        self._docker = docker_client

    async def get(self, site_id: int) -> int | None:
        """The version at which the site was last deleted, if it was."""
        return await self._docker.run(lambda api: max((v for v, _ in _of_site(api, site_id)), default=None))

    async def all(self) -> dict[int, int]:
        """Every deleted site's last delete version."""

        def read(api: docker.APIClient) -> dict[int, int]:
            found: dict[int, int] = {}
            for config in configs(api):
                labels = config["Spec"].get("Labels") or {}
                site_id = int(labels.get(SITE_ID, "0"))
                found[site_id] = max(found.get(site_id, 0), version_of(labels))
            return found

        return await self._docker.run(read)

    async def set(self, site_id: int, version: int, keep_seconds: float) -> None:
        """Record a delete at `version`: the new tombstone is written before older ones go."""
        expires = str(int(time.time() + keep_seconds))

        def write(api: docker.APIClient) -> None:
            existing = _of_site(api, site_id)
            if any(v >= version for v, _ in existing):
                return
            labels = {MANAGED_BY: MANAGER, SITE_ID: str(site_id), VERSION: str(version), TOMBSTONE: "true",
                      EXPIRES: expires}  # fmt: skip
            try:
                api.create_config(
                    tombstone_name(site_id, version), f"deleted at version {version}\n".encode(), labels=labels
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another writer recorded the same delete
                    raise
            for _, config_id in existing:
                _ignore_missing(api.remove_config, config_id)

        await self._docker.run(write)

    async def expire(self, default_keep_seconds: float, now: float | None = None) -> int:
        """Remove every tombstone past its time (one written before tombstones carried it: past
        its creation plus `default_keep_seconds`); how many went."""
        moment = time.time() if now is None else now

        def sweep(api: docker.APIClient) -> int:
            gone = 0
            for config in configs(api):
                labels = config["Spec"].get("Labels") or {}
                stamp = labels.get(EXPIRES, "")
                expires = (
                    int(stamp) if stamp.isdigit() else timestamp(config.get("CreatedAt", "")) + default_keep_seconds
                )
                if expires < moment:
                    _ignore_missing(api.remove_config, config["ID"])
                    gone += 1
            return gone

        return await self._docker.run(sweep)

    async def clear(self, site_id: int) -> None:
        def clear(api: docker.APIClient) -> None:
            for _, config_id in _of_site(api, site_id):
                _ignore_missing(api.remove_config, config_id)

        await self._docker.run(clear)


def tombstone_name(site_id: int, version: int) -> str:
    """The config recording a delete. Docker allows 64 characters: the longest site id and the
    largest version the contract accepts fit (59)."""
    return f"{TOMBSTONE_PREFIX}{service_name(site_id)}-v{version}"


def configs(api: docker.APIClient, site_id: int | None = None) -> list[dict[str, Any]]:
    """The tombstone configs of one site, or of all."""
    wanted = managed(f"{TOMBSTONE}=true", *([f"{SITE_ID}={site_id}"] if site_id is not None else []))
    found: list[dict[str, Any]] = api.configs(filters=wanted)
    return found


def _of_site(api: docker.APIClient, site_id: int) -> list[tuple[int, str]]:
    """(version, config id) of every tombstone of the site."""
    return [(version_of(c["Spec"].get("Labels")), c["ID"]) for c in configs(api, site_id)]


def _ignore_missing(remove: Callable[[str], Any], ident: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        remove(ident)
