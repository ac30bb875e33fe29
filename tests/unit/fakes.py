"""In-memory stand-ins for our own adapters (the swarm, the site directories, Traefik's routes),
so the handlers' decisions get fast unit tests. They keep a journal of calls to check order and
counts."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from orchestrator.config import DatabaseServer
from orchestrator.errors import (
    DatabaseUnavailable,
    DockerConflict,
    ImageBuildFailed,
    NotRouted,
    OrchestratorError,
    UnsafePath,
)
from orchestrator.labels import RESTARTED_BY, STABLE_GATE
from orchestrator.sites.databases import Grant
from orchestrator.sites.domains import ClaimIndex
from orchestrator.sites.images import Build
from orchestrator.sites.protocols import Rollout
from orchestrator.sites.rollout import Broken, Ready
from orchestrator.sites.service import Service, ServiceSpec
from orchestrator_contract.results import Probe

SERVER = "http://10.0.1.2:80"


@dataclass
class FakeSwarm:
    services: dict[str, Service] = field(default_factory=dict)
    specs: dict[str, ServiceSpec] = field(default_factory=dict)
    tombstones: dict[int, int] = field(default_factory=dict)
    kept: dict[int, float] = field(default_factory=dict)  # site id -> how long its tombstone stays
    calls: list[str] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)
    # Names whose tasks answer (a converge succeeded since the last change).
    answering: set[str] = field(default_factory=set)
    # Names with one more running task than answer (a replaced task draining).
    draining: set[str] = field(default_factory=set)
    # What the next converge reports instead of Ready (a broken site), once.
    broken: Broken | None = None
    converge_error: OrchestratorError | None = None
    logs: str = ""
    # Conflicts to raise from the next updates ("update out of sequence").
    conflicts: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def get(self, name: str) -> Service | None:
        self.calls.append(f"get {name}")
        found = self.services.get(name)
        if found is None:
            return None
        running = (found.replicas if name in self.answering else 0) + (name in self.draining)
        return replace(found, running=running, update_state="completed")

    async def answering_tasks(self, service: Service) -> int:
        self.calls.append(f"answering {service.name}")
        return service.replicas if service.name in self.answering else 0

    async def claims(self, label_keys: Sequence[str]) -> dict[str, frozenset[str]]:
        self.calls.append("claims")
        index = ClaimIndex()
        for service in self.services.values():
            index.replace(service.name, service.labels)
        return index.holders(label_keys)

    async def create(self, spec: ServiceSpec) -> Service:
        self.calls.append(f"create {spec.name}")
        deployed = Service(f"id{next(self._ids)}", spec.name, 1, dict(spec.labels), spec.replicas, env=dict(spec.env))
        self.services[spec.name], self.specs[spec.name] = deployed, spec
        self.answering.discard(spec.name)
        return deployed

    async def update(self, current: Service, spec: ServiceSpec) -> Service:
        self.calls.append(f"update {spec.name}")
        if self.conflicts:
            self.conflicts -= 1
            raise DockerConflict("update out of sequence")
        deployed = replace(
            current, index=current.index + 1, labels=dict(spec.labels), replicas=spec.replicas, env=dict(spec.env)
        )
        deployed = replace(deployed, running=None, update_state=None)
        self.services[spec.name], self.specs[spec.name] = deployed, spec
        self.answering.discard(spec.name)
        return deployed

    async def restart(self, current: Service, marker: str, gated: bool = True) -> Service:
        self.calls.append(f"restart {current.name}")
        self.answering.discard(current.name)
        stored = self.services[current.name]
        labels = {**stored.labels, RESTARTED_BY: marker, STABLE_GATE: "1" if gated else "0"}
        restarted = replace(stored, index=stored.index + 1, labels=labels)
        self.services[current.name] = restarted
        return replace(restarted, running=None, update_state=None)

    async def spec_of(self, name: str) -> tuple[Service, ServiceSpec] | None:
        found = await self.get(name)
        return None if found is None else (found, self.specs[name])

    async def remove(self, service: Service) -> None:
        self.calls.append(f"remove {service.name}")
        self.services.pop(service.name, None)

    async def converge(self, service: Service, rollout: Rollout) -> Ready | Broken:
        self.calls.append(f"converge {service.name}")
        self.rollouts.append(rollout)
        error, self.converge_error = self.converge_error, None
        if error is not None:
            raise error
        broken, self.broken = self.broken, None
        if broken is not None:
            return broken
        self.answering.add(service.name)
        return Ready((SERVER,) if rollout.replicas else ())

    async def last_logs(self, task_id: str, lines: int) -> str:
        self.calls.append(f"last_logs {task_id}")
        return self.logs

    async def wait_gone(self, service: Service, timeout: float) -> None:
        self.calls.append(f"wait_gone {service.name}")

    async def wait_replaced(self, service: Service, timeout: float) -> None:
        self.calls.append(f"wait_replaced {service.name}")

    async def tombstone(self, site_id: int) -> int | None:
        return self.tombstones.get(site_id)

    async def set_tombstone(self, site_id: int, version: int, keep_seconds: float) -> None:
        self.calls.append(f"set_tombstone {site_id} v{version}")
        self.kept[site_id] = keep_seconds
        self.tombstones[site_id] = max(version, self.tombstones.get(site_id, 0))

    async def clear_tombstone(self, site_id: int) -> None:
        self.calls.append(f"clear_tombstone {site_id}")
        self.tombstones.pop(site_id, None)


@dataclass
class FakeSiteDirs:
    root: PurePosixPath = field(default_factory=lambda: PurePosixPath("/srv/director/sites"))
    existing: dict[str, int] = field(default_factory=dict)  # name -> owner
    with_run_script: set[str] = field(default_factory=set)
    trashed: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    # A site whose directory was replaced by a link: every operation on it is refused.
    unsafe: set[str] = field(default_factory=set)

    def path(self, name: str) -> Path:
        return Path(self.root / name)

    async def check(self, name: str) -> bool:
        self.calls.append(f"check {name}")
        self._refuse_unsafe(name)
        return name in self.existing

    async def ensure(self, name: str, owner: int) -> Path:
        self.calls.append(f"ensure {name}")
        self._refuse_unsafe(name)
        self.existing[name] = owner
        return self.path(name)

    async def has_run_script(self, name: str) -> bool:
        return name in self.with_run_script

    async def trash(self, name: str, tag: str) -> Path | None:
        self.calls.append(f"trash {name}")
        self._refuse_unsafe(name)
        if self.existing.pop(name, None) is None:
            return None
        self.trashed.append(name)
        return Path(self.root / ".trash" / f"{name}-{tag}")

    def _refuse_unsafe(self, name: str) -> None:
        if name in self.unsafe:
            raise UnsafePath(f"{name} is not a real directory")


@dataclass
class FakeRoutes:
    """Traefik that serves every site at once, unless told it does not serve some."""

    unrouted: set[str] = field(default_factory=set)
    verified: list[tuple[str, str, tuple[str, ...] | None]] = field(default_factory=list)

    async def verify(self, name: str, host: str, servers: Sequence[str] | None, timeout: float) -> Probe:
        self.verified.append((name, host, tuple(servers) if servers is not None else None))
        if name in self.unrouted:
            raise NotRouted(f"{host} was not served by {name}")
        return Probe(url="http://traefik", host=host, status=200, duration_ms=1.0)


@dataclass
class FakeImages:
    """A registry and a builder in memory: tags per repository, builds that fail when told."""

    registry: dict[str, list[str]] = field(default_factory=dict)
    built: list[Build] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    fails: str = ""

    async def tags(self, repository: str) -> list[str]:
        return list(self.registry.get(repository, []))

    async def build(self, build: Build) -> str:
        if self.fails:
            raise ImageBuildFailed(f"{build.reference} did not build: {self.fails}")
        self.built.append(build)
        self.registry.setdefault(build.repository, []).append(build.tag)
        return f"{build.reference}@sha256:{'a' * 64}"

    async def delete(self, repository: str, tags: Sequence[str]) -> None:
        for tag in tags:
            self.registry[repository].remove(tag)
            self.deleted.append((repository, tag))


@dataclass
class FakeDatabases:
    """The database servers (`sites.protocols.DatabasesPort`) in memory: site id -> the login that
    works, its password, and whether it is retired. `down`: the next calls fail as a server that
    does not answer."""

    held: dict[int, dict[str, object]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    down: int = 0

    def _answer(self) -> None:
        if self.down:
            self.down -= 1
            raise DatabaseUnavailable("the server does not answer")

    async def provision(self, grant: Grant, fresh: bool) -> None:
        self.calls.append(f"provision {grant.name} {grant.user}" + (" fresh" if fresh else ""))
        self._answer()
        self.held[grant.site_id] = {"user": grant.user, "password": grant.password, "retired": False}

    async def retire(self, grant: Grant) -> None:
        self.calls.append(f"retire {grant.name}")
        self._answer()
        if grant.site_id in self.held:
            self.held[grant.site_id]["retired"] = True


@dataclass
class FakeEngine:
    """One database server's engine (`databases.engines.Engine`) as the requests use it: which
    login of which site logs in, with which password (None: locked)."""

    server: DatabaseServer
    logins: dict[str, str | None] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.server.kind

    async def enable(self, site_id: int, user: str, password: str) -> None:
        self.calls.append(f"enable {user}")
        self.logins[user] = password

    async def lock(self, site_id: int, user: str) -> None:
        self.calls.append(f"lock {user}")
        self.logins[user] = None

    async def close(self) -> None:
        pass


# Default images as an operator configures them: in full, pinned by digest (docs/security.md#images).
BASE = "198.18.213.1:5000/director/base:latest@sha256:" + "1" * 64
NGINX = "198.18.213.1:5000/nginx:latest@sha256:" + "2" * 64
PINNED: dict[str, object] = {"default_image": BASE, "allowed_default_images": [BASE], "static_image": NGINX}
