"""What the handlers need from the world, as small protocols: the swarm and the site directories.

`swarm.Swarm` and `sitedirs.SiteDirs` implement them on Docker and the file system; the unit
tests give handlers in-memory fakes, so their decisions are tested without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator import spec as specs
from orchestrator.spec import ServiceSpec


@dataclass(frozen=True)
class Deployed:
    """A site service as the swarm holds it."""

    id: str
    name: str
    index: int  # Docker's version index, for optimistic concurrency
    labels: dict[str, str]
    replicas: int

    @property
    def site_version(self) -> int:
        return label_version(self.labels)

    @property
    def fingerprint(self) -> str | None:
        return self.labels.get(specs.FINGERPRINT)

    @property
    def domains(self) -> tuple[str, ...]:
        raw = self.labels.get(specs.DOMAINS, "")
        return tuple(d for d in raw.split(",") if d)


def label_version(labels: dict[str, str] | None) -> int:
    return int((labels or {}).get(specs.VERSION, "0"))


class SwarmPort(Protocol):
    async def get(self, name: str) -> Deployed | None: ...

    async def managed(self) -> list[Deployed]: ...

    async def create(self, spec: ServiceSpec) -> Deployed: ...

    async def update(self, current: Deployed, spec: ServiceSpec) -> Deployed: ...

    async def remove(self, service: Deployed) -> None: ...

    async def wait_converged(self, service: Deployed, replicas: int, since: float, timeout: float) -> None: ...

    async def wait_gone(self, service: Deployed, timeout: float) -> None: ...

    async def tombstone(self, site_id: int) -> int | None: ...

    async def set_tombstone(self, site_id: int, version: int) -> None: ...

    async def clear_tombstone(self, site_id: int) -> None: ...


class SiteDirsPort(Protocol):
    def path(self, name: str) -> Path: ...

    async def check(self, name: str) -> None: ...

    async def ensure(self, name: str) -> Path: ...

    async def trash(self, name: str, tag: str) -> Path | None: ...
