"""`orchestrator status`: every managed site as the swarm holds it, with its health and drift."""

from __future__ import annotations

import asyncio
import json

from orchestrator.config import Settings
from orchestrator.files.quota import DiskUsage
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.ops.drift import Fleet, Inventory, find_drift
from orchestrator.ops.health import classify
from orchestrator.ops.tables import escaped, render, size
from orchestrator.sites.protocols import Service
from orchestrator.swarm.client import DockerClient
from orchestrator.swarm.services import Swarm

# Drift that is about a path under the sites root rather than a service.
_PATH_DRIFT = ("unmanaged_dir", "old_trash")


async def survey(swarm: Swarm, sitedirs: SiteDirs, settings: Settings) -> Fleet:
    services, tombstones, (dirs, trash) = await asyncio.gather(
        swarm.survey(), swarm.tombstones.all(), sitedirs.inventory()
    )
    fleet = find_drift(Inventory(services, tombstones, dirs, trash), settings.trash_max_age_days)
    if missing := sitedirs.missing_mount_options():
        fleet.warnings.append(f"the sites root {settings.sites_root} is not mounted {','.join(missing)}")
    if why := await asyncio.to_thread(sitedirs.quota_problem):
        fleet.warnings.append(f"SITE_DISK_LIMIT is not enforced: {why}")
    fleet.disks.update(await asyncio.to_thread(sitedirs.disk_usage, [s.name for s in fleet.services]))
    return fleet


def health_of(service: Service) -> str:
    if service.replicas == 0:
        return "not serving"
    return classify(service.running or 0, service.replicas, 0).status


def disk_json(usage: DiskUsage | None) -> dict[str, int | None] | None:
    """Bytes the site's directory holds and its limit; null where the filesystem keeps no count."""
    return None if usage is None else {"used": usage.used, "limit": usage.limit}


def disk_cell(usage: DiskUsage | None) -> str:
    if usage is None:
        return "-"
    return f"{size(usage.used)}/{size(usage.limit) if usage.limit else 'no limit'}"


def as_json(fleet: Fleet, site: int | None = None) -> str:
    sites = [
        {
            "site_id": s.site_id,
            "service": s.name,
            "version": s.site_version,
            "running": s.running or 0,
            "desired": s.replicas,
            "health": health_of(s),
            "domains": list(s.domains),
            "last_error": s.last_error,
            "drift": [d.model_dump(mode="json") for d in fleet.drift_of(s.name)],
            "disk": disk_json(fleet.disks.get(s.name)),
        }
        for s in fleet.services
        if site is None or s.site_id == site
    ]
    other = [d.model_dump(mode="json") for d in fleet.drift if d.kind in _PATH_DRIFT]
    other = [d for d in other if site is None or d["site_id"] == site]
    return json.dumps({"sites": sites, "other_drift": other, "warnings": fleet.warnings}, indent=2)


def as_table(fleet: Fleet, site: int | None = None) -> str:
    rows = [
        (
            str(s.site_id or "-"),
            s.name,
            str(s.site_version),
            f"{s.running or 0}/{s.replicas}",
            health_of(s),
            ",".join(s.domains) or "-",
            ",".join(d.kind for d in fleet.drift_of(s.name)) or "-",
            disk_cell(fleet.disks.get(s.name)),
            escaped((s.last_error or "-")[:60]),
        )
        for s in sorted(fleet.services, key=lambda s: s.name)
        if site is None or s.site_id == site
    ]
    lines = [render(("SITE", "SERVICE", "VERSION", "TASKS", "HEALTH", "DOMAINS", "DRIFT", "DISK", "LAST ERROR"), rows)]
    if fleet.warnings:
        lines += [f"warning: {w}" for w in fleet.warnings]
    for d in fleet.drift:
        if d.kind in _PATH_DRIFT and (site is None or d.site_id == site):
            lines.append(f"{d.kind}: {escaped(d.subject)}: {d.detail}")
    return "\n".join(lines)


def cli_swarm(settings: Settings) -> Swarm:
    """A swarm adapter for a one-shot command: no event stream, so nothing is remembered."""
    client = DockerClient(settings.docker_url, settings.docker_timeout_seconds, concurrency=4)
    return Swarm(client, network=settings.network, port=settings.site_port)


async def run_status(settings: Settings, *, as_json_output: bool, site: int | None) -> str:
    swarm = cli_swarm(settings)
    try:
        fleet = await survey(swarm, SiteDirs.of(settings), settings)
    finally:
        swarm.close()
    return as_json(fleet, site) if as_json_output else as_table(fleet, site)
