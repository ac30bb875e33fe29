"""What the handlers need from the world, as small protocols (the "ports" of ports and adapters).

`swarm.services.Swarm`, `files.sitedirs.SiteDirs`, `traefik.routes.TraefikRoutes`,
`swarm.cache.VerifiedRoutes`, `swarm.builds.ImageBuilder`, `terminals.host.TerminalHost`,
`certificates.issuer.Issuer`, `monitor.health.HealthMonitor` and `files.service.SiteFiles` implement
them; the unit tests give handlers in-memory fakes (tests/unit/fakes.py), so their decisions are
tested without I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.errors import DatabaseNotOffered, ImageBuildFailed
from orchestrator.sites.databases import Grant
from orchestrator.sites.images import Build
from orchestrator.sites.rollout import Broken, Ready
from orchestrator.sites.service import Service, ServiceSpec
from orchestrator_contract.certificates import SiteTls
from orchestrator_contract.results import Probe


class SwarmPort(Protocol):
    async def get(self, name: str) -> Service | None:
        """The service with its status (one call), or None."""

    async def answering_tasks(self, service: Service) -> int:
        """Its tasks that answer now (running, meant to run, on a node that is up): fewer than
        `Service.running` while a replaced task drains or a node is lost."""

    async def claims(self, label_keys: Sequence[str]) -> dict[str, frozenset[str]]:
        """Services holding any of these claim labels (see `domains.lookup_labels`), each with
        all its claim labels."""

    async def create(self, spec: ServiceSpec) -> Service: ...

    async def update(self, current: Service, spec: ServiceSpec) -> Service: ...

    async def restart(self, current: Service, marker: str, gated: bool = True) -> Service:
        """Replace the service's tasks with fresh ones of the same spec (a forced rolling update),
        recording `marker` (the request) on the service; `gated`: the new tasks are held back for
        the stability window (an older task serves meanwhile; see `labels.STABLE_GATE`)."""

    async def remove(self, service: Service) -> None: ...

    async def converge(self, service: Service, rollout: Rollout) -> Ready | Broken:
        """Wait until the rollout is ready or broken; ConvergeTimeout past its deadline."""

    async def last_logs(self, task_id: str, lines: int) -> str:
        """The last lines a task wrote, on whichever node, the site's env values masked ("" when Docker
        no longer has them)."""

    async def wait_gone(self, service: Service, timeout: float) -> None: ...

    async def tombstone(self, site_id: int) -> int | None: ...

    async def set_tombstone(self, site_id: int, version: int, keep_seconds: float) -> None:
        """Record a delete at `version`, kept `keep_seconds` (then expired by housekeeping)."""

    async def clear_tombstone(self, site_id: int) -> None: ...


@dataclass(frozen=True)
class Rollout:
    """What to wait for after an apply (or for a redelivery, to confirm)."""

    since: float  # epoch seconds of the apply: tasks and rollback states before it are not ours
    replicas: int
    runs_site_script: bool
    timeout: float
    # Tasks healthy at their first answer (nothing older served meanwhile): ready only once each
    # has been seen running this long (the stability window its probe watches in the background).
    watch_seconds: float | None = None


class ImagesPort(Protocol):
    """Site images: the registry's tags of a repository, builds and pushes, and deletes."""

    async def tags(self, repository: str) -> list[str]:
        """The tags the registry holds for `repository` (none when it has no such repository)."""

    async def build(self, build: Build) -> str:
        """Build and push; the pushed reference pinned by digest. ImageBuildFailed with the build
        log's last lines (masked) when the recipe does not build or past the build timeout."""

    async def delete(self, repository: str, tags: Sequence[str]) -> None:
        """Delete these tags' manifests from the registry and the builder's images (best effort)."""


class NoImages:
    """No builder: every build request is refused (a process without one, the unit tests' default)."""

    async def tags(self, repository: str) -> list[str]:
        return []

    async def build(self, build: Build) -> str:
        raise ImageBuildFailed("this orchestrator builds no images")

    async def delete(self, repository: str, tags: Sequence[str]) -> None:
        return None


class DatabasesPort(Protocol):
    """The database servers (`databases.servers.Databases`)."""

    async def provision(self, grant: Grant, fresh: bool) -> None:
        """The grant's database and logins exist and its login works with its password
        (idempotent; what was retired is had back as it was). `fresh`: no service holds the
        grant yet (see `databases.engines.Engine.provision`)."""

    async def retire(self, grant: Grant) -> None:
        """Its logins locked, the database kept until its retention ends (idempotent)."""


class NoDatabases:
    """No database servers (the unit tests' default): a site asking for one is refused."""

    async def provision(self, grant: Grant, fresh: bool) -> None:
        raise DatabaseNotOffered("this orchestrator has no database servers")

    async def retire(self, grant: Grant) -> None:
        raise DatabaseNotOffered("this orchestrator has no database servers")


class SiteDirsPort(Protocol):
    def path(self, name: str) -> Path: ...

    async def check(self, name: str) -> bool:
        """UnsafePath unless the site's directory is missing (False) or a real directory (True)."""

    async def ensure(self, name: str, owner: int) -> Path:
        """Create the site's directories (owned by `owner`) if missing; return the site directory."""

    async def has_run_script(self, name: str) -> bool:
        """Whether the site holds a run.sh where the site's entry program looks for one."""

    async def trash(self, name: str, tag: str) -> Path | None: ...


class RoutesPort(Protocol):
    async def verify(self, name: str, host: str, servers: Sequence[str] | None, timeout: float) -> Probe:
        """Wait until Traefik sends the site's requests to exactly `servers` (None: not checked)
        and a request for `host` is answered by the site; NotRouted past `timeout`."""


class VerifiedPort(Protocol):
    """Checks through Traefik remembered while nothing happens to a service's tasks (see
    `swarm.cache.VerifiedRoutes`)."""

    def get(self, service: Service) -> Probe | None: ...

    def put(self, service: Service, probe: Probe) -> None: ...


class NoMemory:
    """Remembers nothing: every redelivery is checked through Traefik again."""

    def get(self, service: Service) -> Probe | None:
        return None

    def put(self, service: Service, probe: Probe) -> None:
        return None


class CertificatesPort(Protocol):
    """The certificate issuer (`certificates.issuer.Issuer`): more things a site's spec asks for."""

    async def secure(self, site_id: int, hosts: Sequence[str]) -> SiteTls | None:
        """Ask for certificates for the site's names; wait (bounded) until each is served or has
        a reason not to be; say which are which."""

    def release(self, site_id: int) -> None:
        """The site is gone: its certificates go."""


class NoCertificates:
    """No issuer: nothing is said of HTTPS."""

    async def secure(self, site_id: int, hosts: Sequence[str]) -> SiteTls | None:
        return None

    def release(self, site_id: int) -> None:
        return None


class HealthPort(Protocol):
    """The health monitor (`monitor.health.HealthMonitor`): what it watches after deploy."""

    def watch(self, name: str) -> None:
        """The site's deploy saw it answer: from now on, its going down is reported."""


class NoHealth:
    """No monitor: nothing is watched."""

    def watch(self, name: str) -> None:
        return None


class SessionsPort(Protocol):
    """What keeps something of a site open outside its service: terminal sessions
    (`terminals.host.TerminalHost`), file streams and uploads (`files.service.SiteFiles`)."""

    async def close_site(self, site_id: int) -> int:
        """End all of it for the site (a deleted site; whoever used it hears why); how many."""
