"""One small async function per event type: read, decide (pure), then ask the swarm to make it so.

Handlers know events and our adapters' protocols (swarm, site directories, routes), never the
broker or the Docker SDK.
They are idempotent: the same event applied twice leaves the same state. `site.deployed` of a
serving site is published only once its tasks answer, steadily, and Traefik serves it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import assert_never

from orchestrator import retry
from orchestrator.config import Settings
from orchestrator.errors import DomainConflict, NotFound, OrchestratorError, ServiceFailed, SiteNotServing
from orchestrator.labels import FINGERPRINT, RESTARTED_BY, STABLE_GATE
from orchestrator.logging_setup import fields
from orchestrator.sites.admission import Admitted, admit
from orchestrator.sites.images import admit_build, image_repository, newest_tag, tags_to_delete
from orchestrator.sites.locks import Changes, KeyedLocks
from orchestrator.sites.memo import Fingerprints
from orchestrator.sites.protocols import (
    CertificatesPort,
    DatabasesPort,
    ImagesPort,
    NoCertificates,
    NoDatabases,
    NoImages,
    NoMemory,
    Rollout,
    RoutesPort,
    SessionsPort,
    SiteDirsPort,
    SwarmPort,
    VerifiedPort,
)
from orchestrator.sites.rollout import Broken
from orchestrator.sites.service import Service, ServiceSpec
from orchestrator.sites.spec import desired_service, site_uid, without_gate
from orchestrator.slices import Admission, SiteRuntime
from orchestrator.traefik.labels import probe_host
from orchestrator_contract.certificates import SiteTls
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.hostnames import Hostname, parse_hostname
from orchestrator_contract.results import Probe, ServiceRef, SiteResult, SiteResultType
from orchestrator_contract.sites import (
    SiteCreated,
    SiteDeleted,
    SiteEvent,
    SiteImageRequested,
    SiteKind,
    SiteRestartRequested,
    SiteUpdated,
    SiteUpserted,
    service_name,
)

log = logging.getLogger("orchestrator.sites")

LOG_LINES = 10
DAY = 86400.0
NO_RUN_SCRIPT = (
    "no run.sh in the site directory, private/ or public/: the service is kept, idle, and starts the site "
    "as soon as its owner adds one"
)


@dataclass
class Context:
    settings: Settings
    swarm: SwarmPort
    sitedirs: SiteDirsPort
    routes: RoutesPort
    # Domain claims are checked and recorded under these locks, so two racing sites cannot both win.
    claims: KeyedLocks = field(default_factory=KeyedLocks)
    # Notified when a site lets go of a domain, waking claims that wait for it.
    released: Changes = field(default_factory=Changes)
    # Sites recently seen answering; without an event stream, nothing is remembered.
    verified: VerifiedPort = field(default_factory=NoMemory)
    # Closed when a site is deleted, before its files move: terminals, file streams and uploads.
    sessions: Sequence[SessionsPort] = ()
    # Builds of custom images (site.image_requested); without a builder they are refused.
    images: ImagesPort = field(default_factory=NoImages)
    # The fingerprints of desired states built lately: a redelivery builds no spec again.
    fingerprints: Fingerprints = field(default_factory=Fingerprints)
    # Site databases; without servers a site asking for one is refused.
    databases: DatabasesPort = field(default_factory=NoDatabases)
    # Held (key: the service name) by whatever changes a site's service besides its own events,
    # which the receiver already runs one at a time: a database password reset.
    site_locks: KeyedLocks = field(default_factory=KeyedLocks)
    # The certificates of the sites' names (HTTPS); without an issuer nothing is said of them.
    certificates: CertificatesPort = field(default_factory=NoCertificates)
    # What the pure decisions read of the settings (`orchestrator.slices`), built once.
    admission: Admission = field(init=False)
    runtime: SiteRuntime = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission.of(self.settings)
        self.runtime = SiteRuntime.of(self.settings)


@dataclass(frozen=True)
class Stale:
    """The swarm holds a newer version (`applied`: its version; a tombstone's for a deleted site)."""

    applied: int
    current: Service | None


@dataclass(frozen=True)
class Unchanged:
    """The event's version and spec are applied already (a redelivery): nothing to change."""

    current: Service


@dataclass(frozen=True)
class Apply:
    admitted: Admitted
    spec: ServiceSpec
    current: Service | None
    clears_tombstone: bool  # the site was deleted at an older version: it comes back


Decision = Stale | Unchanged | Apply


def decide_upsert(
    version: int,
    current: Service | None,
    deleted_at: int | None,
    admit: Callable[[], Admitted],
    build: Callable[[Admitted], ServiceSpec],
    built_before: str | None = None,
) -> Decision:
    """Pure: what an upsert at `version` means, given the service (or the tombstone of a deleted
    site). The site is admitted (policy may refuse it) and its spec built only once the event is
    not stale: an old event is stale, whatever policy says of it now. `built_before`: the
    fingerprint this site at this version was built to already (admitted then), if known."""
    if current is not None and current.site_version > version:
        return Stale(current.site_version, current)
    if deleted_at is not None and deleted_at >= version:
        return Stale(deleted_at, None)
    if built_before and current and current.fingerprint == built_before and current.site_version == version:
        return Unchanged(current)
    admitted = admit()
    spec = build(admitted)
    if current and current.fingerprint == spec.labels[FINGERPRINT] and current.site_version == version:
        return Unchanged(current)
    return Apply(admitted, spec, current, clears_tombstone=deleted_at is not None)


async def upsert_site(event: SiteUpserted, ctx: Context) -> SiteResult:
    """Make the site's service match the event's full desired state, and confirm it serves."""
    site, swarm = event.site, ctx.swarm
    name = service_name(site.id)
    async with _locked(name, ctx):
        async for attempt in retry.on_conflict():
            with attempt:
                current = await swarm.get(name)
                deleted_at = None if current else await swarm.tombstone(site.id)
                decision = decide_upsert(
                    event.version,
                    current,
                    deleted_at,
                    functools.partial(admit, site, ctx.admission, current.database if current else None),
                    lambda admitted: desired_service(admitted, event.version, ctx.runtime, ctx.sitedirs.path(name)),
                    ctx.fingerprints.get(site, event.version),
                )
                match decision:
                    case Stale(applied=applied, current=holder):
                        return _result(event, "site.stale", holder, applied)
                    case Unchanged(current=deployed):
                        ctx.fingerprints.put(site, event.version, deployed.fingerprint or "")
                        since = deployed.updated_at
                    case Apply(admitted=admitted, spec=spec, clears_tombstone=clears):
                        ctx.fingerprints.put(site, event.version, spec.labels[FINGERPRINT])
                        since = time.time()
                        deployed = await _apply(spec, admitted, current, ctx)
                        if clears:
                            await swarm.clear_tombstone(site.id)
                    case _:
                        assert_never(decision)
    probe = await _confirm(deployed, since, site.hostnames, event.version, current, ctx)
    tls = await ctx.certificates.secure(site.id, site.hostnames) if site.serving else None
    return _result(event, "site.deployed", deployed, event.version, probe, tls=tls)


async def restart_site(event: SiteRestartRequested, ctx: Context) -> SiteResult:
    """Fresh tasks of the same spec (start-first, health-gated like a deploy); the applied version
    stays. A redelivered request restarts nothing again."""
    site_id, swarm = event.site.id, ctx.swarm
    name = service_name(site_id)
    async for attempt in retry.on_conflict():
        with attempt:
            current = await swarm.get(name)
            if current is None:
                deleted_at = await swarm.tombstone(site_id)
                gone = f" (deleted at version {deleted_at})" if deleted_at is not None else ""
                raise NotFound(f"{name} does not exist{gone}: nothing to restart")
            if current.site_version > event.version:
                return _result(event, "site.stale", current, current.site_version)
            if current.replicas == 0:
                note = "the site is not serving (no tasks): nothing to restart"
                return _result(event, "site.deployed", current, current.site_version, note=note)
            before, applied = current, current.site_version
            if current.labels.get(RESTARTED_BY) == str(event.event_id):
                deployed, since = current, current.updated_at
            else:
                since = time.time()
                deployed = await swarm.restart(current, str(event.event_id), gated=current.running != 0)
    hosts = [parse_hostname(domain) for domain in deployed.domains]
    probe = await _confirm(deployed, since, hosts, applied, before, ctx)
    tls = await ctx.certificates.secure(site_id, hosts)
    return _result(event, "site.deployed", deployed, applied, probe, tls=tls)


async def delete_site(event: SiteDeleted, ctx: Context) -> SiteResult:
    """Remove the site's service and move its files to the trash. Deleting nothing succeeds."""
    site_id, swarm = event.site.id, ctx.swarm
    name = service_name(site_id)
    async with _locked(name, ctx):
        async for attempt in retry.on_conflict():
            with attempt:
                current = await swarm.get(name)
                if current is not None and current.site_version > event.version:
                    return _result(event, "site.stale", current, current.site_version)
                deleted_at = await swarm.tombstone(site_id)
                if current is None and deleted_at is not None and deleted_at > event.version:
                    return _result(event, "site.stale", None, None)
                # Refuse a planted link before removing anything, so a delete is never half done.
                has_files = await ctx.sitedirs.check(name)
                # The tombstone goes first: a late, older update must never resurrect the site. A site
                # the swarm never held keeps one only as long as a reordered create could still come.
                existed = current is not None or has_files or deleted_at is not None
                keep = ctx.settings.tombstone_days * DAY if existed else ctx.settings.unknown_tombstone_seconds
                await swarm.set_tombstone(site_id, event.version, keep)
                if current is not None:
                    if current.database is not None:  # locked first: a failure here removes nothing
                        await ctx.databases.retire(current.database)
                    await swarm.remove(current)
                    await ctx.released.notify()
                    await swarm.wait_gone(current, ctx.settings.converge_timeout_seconds)
    for sessions in ctx.sessions:
        await sessions.close_site(site_id)  # before the files move: nobody edits the trash
    ctx.certificates.release(site_id)
    await ctx.sitedirs.trash(name, tag=event.event_id.hex[:8])
    await _forget_images(site_id, ctx)
    return _result(event, "site.removed", None, None)


async def _forget_images(site_id: int, ctx: Context) -> None:
    """A deleted site's built images go too (a site made again under its id starts with none).
    Best effort: the site is gone whatever the registry says; what stays goes at the next delete."""
    repository = image_repository(site_id, ctx.settings.registry)
    try:
        if tags := await ctx.images.tags(repository):
            await ctx.images.delete(repository, tags)
    except OrchestratorError as exc:
        log.warning("a deleted site's images were not deleted", extra=fields(site_id=site_id, error=str(exc)[:200]))


async def build_image(event: SiteImageRequested, ctx: Context) -> SiteResult:
    """Build the site's image `REGISTRY/site_0042:<version>`, push it, keep the newest
    `IMAGE_KEEP` versions. A request older than a version the registry holds is stale; a
    redelivered one reuses what it built."""
    build = admit_build(event.site.id, event.version, event.image, ctx.admission)
    deleted_at = await ctx.swarm.tombstone(event.site.id)
    if deleted_at is not None and deleted_at > event.version:
        return _result(event, "site.stale", None, None)  # for a site deleted since: nothing to build
    tags = await ctx.images.tags(build.repository)
    newest = newest_tag(tags)
    if newest is not None and newest > event.version:
        return _result(event, "site.stale", None, newest)
    reference = await ctx.images.build(build)
    await ctx.images.delete(build.repository, tags_to_delete([*tags, build.tag], ctx.settings.image_keep))
    return _result(event, "site.image_built", None, None, image=reference)


async def _apply(spec: ServiceSpec, admitted: Admitted, current: Service | None, ctx: Context) -> Service:
    """Create or update the service once no other site claims its domains. A domain another site
    holds is waited for briefly (it is usually moving between two sites, the other's update on
    its way), without holding a Docker worker; then the claim fails. The database the spec asks
    for is provisioned (or the one it no longer asks for retired) just before the service
    changes, so a site never runs with a database that is not there, and a refused claim leaves
    no database behind."""
    claims = admitted.claims
    if current is None or current.replicas == 0 or current.running == 0:
        spec = without_gate(spec)  # nothing older serves meanwhile
    deadline = time.monotonic() + ctx.settings.domain_wait_seconds
    while True:
        async with ctx.claims.hold(claims.exclusive, claims.shared):
            taken = claims.clashes(await ctx.swarm.claims(claims.lookup), spec.name)
            if not taken:
                await ctx.sitedirs.ensure(spec.name, site_uid(admitted.site.id, ctx.runtime.uid_base))
                if admitted.database is not None:
                    held = current.database if current is not None else None
                    await ctx.databases.provision(admitted.database, fresh=held is None)
                elif current is not None and current.database is not None:
                    await ctx.databases.retire(current.database)
                deployed = await (ctx.swarm.update(current, spec) if current else ctx.swarm.create(spec))
                break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DomainConflict(f"{'; '.join(taken)} (still after {ctx.settings.domain_wait_seconds:.0f}s)")
        # Woken by a release here; the 1 s bound covers a release by another orchestrator process.
        await ctx.released.wait(min(remaining, 1.0))
    if current and set(current.domains) - set(admitted.hosts):
        await ctx.released.notify()
    return deployed


def _locked(name: str, ctx: Context) -> contextlib.AbstractAsyncContextManager[None]:
    return ctx.site_locks.hold({name}, set())


async def _confirm(
    deployed: Service, since: float, hosts: Sequence[Hostname], version: int, before: Service | None, ctx: Context
) -> Probe | None:
    """Wait until the site answers through Traefik (or, not serving, until it is scaled down);
    raise why it does not. `before`: the service as it was, which a rollback goes back to."""
    settings, name = ctx.settings, deployed.name
    if deployed.settled and (seen := ctx.verified.get(deployed)) is not None:
        return seen  # nothing happened to its tasks since they were seen answering
    runs_script = deployed.kind == SiteKind.DYNAMIC
    idle = runs_script and deployed.replicas > 0 and not await ctx.sitedirs.has_run_script(name)
    servers = None
    if not deployed.settled:
        # Tasks that passed at their first answer (`STABLE_GATE` "0") must answer past the window.
        watch = settings.stable_seconds if deployed.labels.get(STABLE_GATE) == "0" else None
        rollout = Rollout(since, deployed.replicas, runs_script and not idle, settings.converge_timeout_seconds, watch)
        outcome = await ctx.swarm.converge(deployed, rollout)
        if isinstance(outcome, Broken):
            raise await _broken(outcome, version, before, ctx)
        servers = outcome.servers
    if deployed.replicas == 0:
        return None
    if idle:
        raise SiteNotServing(NO_RUN_SCRIPT, code=ErrorCode.NO_RUN_SCRIPT, applied_version=version)
    probe = await ctx.routes.verify(name, probe_host(hosts), servers, settings.route_timeout_seconds)
    ctx.verified.put(deployed, probe)
    return probe


async def _broken(broken: Broken, version: int, before: Service | None, ctx: Context) -> ServiceFailed | SiteNotServing:
    """The error for a rollout that failed, with the task's last log lines (env values masked)."""
    message = broken.message
    if broken.task_id:
        logs = await ctx.swarm.last_logs(broken.task_id, LOG_LINES)
        if logs.strip():
            message += "; last log lines:\n" + logs[-2000:]
    if broken.code is ErrorCode.SERVICE_FAILED and not broken.rolled_back:
        return ServiceFailed(message)
    applied = before.site_version if broken.rolled_back and before else version
    return SiteNotServing(message, code=broken.code, rolled_back=broken.rolled_back, applied_version=applied)


def _result(
    event: SiteUpserted | SiteDeleted | SiteRestartRequested | SiteImageRequested,
    type_: SiteResultType,
    service: Service | None,
    applied_version: int | None,
    probe: Probe | None = None,
    note: str | None = None,
    image: str | None = None,
    tls: SiteTls | None = None,
) -> SiteResult:
    return SiteResult(
        type=type_,
        causation_id=event.event_id,
        site_id=event.site.id,
        version=event.version,
        applied_version=applied_version,
        service=ServiceRef(name=service.name, id=service.id, replicas=service.replicas) if service else None,
        probe=probe,
        note=note,
        image=image,
        tls=tls,
    )


async def dispatch(event: SiteEvent, ctx: Context) -> SiteResult:
    """The handler of each event type; mypy fails here when a new type has none."""
    match event:
        case SiteCreated() | SiteUpdated():
            return await upsert_site(event, ctx)
        case SiteDeleted():
            return await delete_site(event, ctx)
        case SiteRestartRequested():
            return await restart_site(event, ctx)
        case SiteImageRequested():
            return await build_image(event, ctx)
        case _:
            assert_never(event)
