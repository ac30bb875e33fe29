"""In-memory stand-ins for our own adapters (the swarm, the site directories), so the handlers'
decisions get fast unit tests. They keep a journal of calls to check order and counts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from orchestrator.errors import DockerConflict, OrchestratorError, UnsafePath
from orchestrator.ports import Deployed
from orchestrator.spec import MANAGED_BY, MANAGER, ServiceSpec


@dataclass
class FakeSwarm:
    services: dict[str, Deployed] = field(default_factory=dict)
    specs: dict[str, ServiceSpec] = field(default_factory=dict)
    tombstones: dict[int, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    # What the next wait_converged raises (a broken site), once.
    converge_error: OrchestratorError | None = None
    # Conflicts to raise from the next updates ("update out of sequence").
    conflicts: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def get(self, name: str) -> Deployed | None:
        self.calls.append(f"get {name}")
        return self.services.get(name)

    async def managed(self) -> list[Deployed]:
        self.calls.append("managed")
        return [s for s in self.services.values() if s.labels.get(MANAGED_BY) == MANAGER]

    async def create(self, spec: ServiceSpec) -> Deployed:
        self.calls.append(f"create {spec.name}")
        deployed = Deployed(f"id{next(self._ids)}", spec.name, 1, dict(spec.labels), spec.replicas)
        self.services[spec.name], self.specs[spec.name] = deployed, spec
        return deployed

    async def update(self, current: Deployed, spec: ServiceSpec) -> Deployed:
        self.calls.append(f"update {spec.name}")
        if self.conflicts:
            self.conflicts -= 1
            raise DockerConflict("update out of sequence")
        deployed = replace(current, index=current.index + 1, labels=dict(spec.labels), replicas=spec.replicas)
        self.services[spec.name], self.specs[spec.name] = deployed, spec
        return deployed

    async def remove(self, service: Deployed) -> None:
        self.calls.append(f"remove {service.name}")
        self.services.pop(service.name, None)

    async def wait_converged(self, service: Deployed, replicas: int, since: float, timeout: float) -> None:
        self.calls.append(f"wait_converged {service.name}")
        error, self.converge_error = self.converge_error, None
        if error is not None:
            raise error

    async def wait_gone(self, service: Deployed, timeout: float) -> None:
        self.calls.append(f"wait_gone {service.name}")

    async def tombstone(self, site_id: int) -> int | None:
        return self.tombstones.get(site_id)

    async def set_tombstone(self, site_id: int, version: int) -> None:
        self.calls.append(f"set_tombstone {site_id} v{version}")
        self.tombstones[site_id] = max(version, self.tombstones.get(site_id, 0))

    async def clear_tombstone(self, site_id: int) -> None:
        self.calls.append(f"clear_tombstone {site_id}")
        self.tombstones.pop(site_id, None)


@dataclass
class FakeSiteDirs:
    root: PurePosixPath = field(default_factory=lambda: PurePosixPath("/srv/director/sites"))
    existing: set[str] = field(default_factory=set)
    trashed: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    # A site whose directory was replaced by a link: every operation on it is refused.
    unsafe: set[str] = field(default_factory=set)

    def path(self, name: str) -> Path:
        return Path(self.root / name)

    async def check(self, name: str) -> None:
        self.calls.append(f"check {name}")
        self._refuse_unsafe(name)

    async def ensure(self, name: str) -> Path:
        self.calls.append(f"ensure {name}")
        self._refuse_unsafe(name)
        self.existing.add(name)
        return self.path(name)

    async def trash(self, name: str, tag: str) -> Path | None:
        self.calls.append(f"trash {name}")
        self._refuse_unsafe(name)
        if name not in self.existing:
            return None
        self.existing.discard(name)
        self.trashed.append(name)
        return Path(self.root / ".trash" / f"{name}-{tag}")

    def _refuse_unsafe(self, name: str) -> None:
        if name in self.unsafe:
            raise UnsafePath(f"{name} is not a real directory")
