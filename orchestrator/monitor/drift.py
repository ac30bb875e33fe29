"""Pure: what drifted, from an inventory of the swarm and the sites root.

A service's live spec is mapped back to a `ServiceSpec` (`swarm.spec_of`) and fingerprinted the
way it was at apply; a different fingerprint means somebody changed it by hand. Nothing here
deletes anything: files are only ever reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from orchestrator.files.quota import DiskUsage
from orchestrator.labels import FINGERPRINT, RESTARTED_BY
from orchestrator.sites.service import Service, ServiceSpec
from orchestrator_contract.certificates import SiteTls
from orchestrator_contract.results import Drift

_SITE_DIR = re.compile(r"site_(\d{4,10})")
DAY = 86400.0


@dataclass(frozen=True)
class Inventory:
    services: Sequence[Service]
    tombstones: Mapping[int, int]  # site id -> version of its delete
    site_dirs: Sequence[str]  # names of directories under the sites root (trash excluded)
    trash: Sequence[tuple[str, float]]  # (name, age in seconds)


@dataclass(frozen=True)
class Fleet:
    services: Sequence[Service]
    drift: list[Drift] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the platform, not a site
    disks: dict[str, DiskUsage] = field(default_factory=dict)  # by service name, where known
    database_bytes: dict[str, int] = field(default_factory=dict)  # by service name, where known
    tls: dict[str, SiteTls] = field(default_factory=dict)  # by service name: its names over HTTPS

    def drift_of(self, name: str) -> list[Drift]:
        return [d for d in self.drift if d.subject == name]


def applied_fingerprint(spec: ServiceSpec) -> str | None:
    return spec.labels.get(FINGERPRINT)


def live_fingerprint(spec: ServiceSpec) -> str:
    """The fingerprint the live spec would have had at apply: a restart's marker is ours too."""
    return replace(spec, labels={k: v for k, v in spec.labels.items() if k != RESTARTED_BY}).fingerprint()


def edited(spec: ServiceSpec) -> bool:
    recorded = applied_fingerprint(spec)
    return recorded is not None and recorded != live_fingerprint(spec)


def restorable(state: Service) -> bool:
    """Docker's previous spec is the one that was applied (one hand edit since)."""
    return (
        state.previous is not None
        and not edited(state.previous)
        and state.live is not None
        and applied_fingerprint(state.previous) == applied_fingerprint(state.live)
    )


def find_drift(inventory: Inventory, trash_max_age_days: float) -> Fleet:
    drift: list[Drift] = []
    served = {state.name for state in inventory.services}
    for state in inventory.services:
        if state.live is not None and edited(state.live):
            how = "Docker's previous spec is the applied one" if restorable(state) else "no applied spec to go back to"
            drift.append(
                Drift(
                    kind="edited",
                    subject=state.name,
                    site_id=state.site_id,
                    detail=f"the service no longer matches version {state.site_version} as applied ({how})",
                )
            )
        deleted = inventory.tombstones.get(state.site_id or 0)
        if deleted is not None and deleted >= state.site_version:
            drift.append(
                Drift(
                    kind="tombstoned",
                    subject=state.name,
                    site_id=state.site_id,
                    detail=f"the site was deleted at version {deleted} "
                    f"but its service (version {state.site_version}) runs",
                )
            )
    for name in inventory.site_dirs:
        match = _SITE_DIR.fullmatch(name)
        if match and name not in served:
            drift.append(
                Drift(
                    kind="unmanaged_dir",
                    subject=name,
                    site_id=int(match.group(1)),
                    detail="a site directory with no service (a site never deployed, or removed by hand)",
                )
            )
    for name, age in inventory.trash:
        if age > trash_max_age_days * DAY:
            drift.append(
                Drift(kind="old_trash", subject=name, detail=f"in the trash for {age / DAY:.0f} days; delete by hand")
            )
    return Fleet(inventory.services, drift)
