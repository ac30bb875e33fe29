"""`orchestrator status`: every managed site as the swarm holds it, with its health and drift."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrator.certificates import wildcards
from orchestrator.certificates.standing import site_tls
from orchestrator.certificates.store import Store
from orchestrator.commands.output import DRIFT, OK
from orchestrator.commands.tables import escaped, render, size
from orchestrator.commands.wiring import cli_swarm
from orchestrator.config import Settings
from orchestrator.databases.servers import Databases
from orchestrator.files.quota import DiskUsage
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.monitor.drift import Fleet
from orchestrator.monitor.health import classify
from orchestrator.monitor.survey import survey
from orchestrator.sites.service import Service
from orchestrator_contract.certificates import SiteTls

# Drift that is about a path under the sites root or a database rather than a service.
_PATH_DRIFT = ("unmanaged_dir", "old_trash", "orphan_database")


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


def database_json(service: Service, fleet: Fleet) -> dict[str, object] | None:
    """The site's database as its service names it (never its password), and its size."""
    grant = service.database
    if grant is None:
        return None
    return {
        "kind": grant.kind.value,
        "server": grant.server,
        "name": grant.name,
        "user": grant.user,
        "bytes": fleet.database_bytes.get(service.name),
    }


def database_cell(service: Service, fleet: Fleet) -> str:
    grant = service.database
    if grant is None:
        return "-"
    held = fleet.database_bytes.get(service.name)
    return f"{grant.kind.value}:{grant.server} {'?' if held is None else size(held)}"


def tls_of(services: Sequence[Service], settings: Settings) -> dict[str, SiteTls]:
    """Each site's names as the certificate issuer's store has them (read-only)."""
    records = Store(settings.tls_dir, settings.deployment).records()
    operator = wildcards.load([Path(p) for p in settings.tls_wildcard_files])
    now, ordering = time.time(), bool(settings.acme_directory_url)
    return {s.name: site_tls(s.domains, records, operator, now, ordering=ordering) for s in services}


def tls_cell(tls: SiteTls | None) -> str:
    """Names served over HTTPS of all the site's names, and the first reason one is not."""
    if tls is None:
        return "-"
    cell = f"{len(tls.served)}/{len(tls.served) + len(tls.pending)}"
    if why := next((p.error.code.value if p.error else p.status for p in tls.pending), None):
        cell += f" {why}"
    return cell


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
            "database": database_json(s, fleet),
            "tls": tls.model_dump(mode="json") if (tls := fleet.tls.get(s.name)) else None,
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
            database_cell(s, fleet),
            tls_cell(fleet.tls.get(s.name)),
            escaped((s.last_error or "-")[:60]),
        )
        for s in sorted(fleet.services, key=lambda s: s.name)
        if site is None or s.site_id == site
    ]
    header = (
        "SITE",
        "SERVICE",
        "VERSION",
        "TASKS",
        "HEALTH",
        "DOMAINS",
        "DRIFT",
        "DISK",
        "DATABASE",
        "TLS",
        "LAST ERROR",
    )
    lines = [render(header, rows)]
    if fleet.warnings:
        lines += [f"warning: {w}" for w in fleet.warnings]
    for d in fleet.drift:
        if d.kind in _PATH_DRIFT and (site is None or d.site_id == site):
            lines.append(f"{d.kind}: {escaped(d.subject)}: {d.detail}")
    return "\n".join(lines)


def drift_shown(fleet: Fleet, site: int | None) -> bool:
    """Whether what the command shows (one site's, or the whole fleet's) has drifted."""
    return any(site is None or d.site_id == site for d in fleet.drift)


async def run_status(settings: Settings) -> Fleet:
    swarm, databases = cli_swarm(settings), Databases.of(settings)
    try:
        fleet = await survey(swarm, SiteDirs.of(settings), settings, databases)
    finally:
        swarm.close()
        await databases.close()
    fleet.tls.update(await asyncio.to_thread(tls_of, fleet.services, settings))
    return fleet


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Exits DRIFT when anything shown drifted, so a script or a probe can tell."""
    fleet = asyncio.run(run_status(settings))
    print(as_json(fleet, args.site) if args.output == "json" else as_table(fleet, args.site))
    return DRIFT if drift_shown(fleet, args.site) else OK
