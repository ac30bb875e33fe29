"""One small async function per event type: decide, then ask the swarm to make it so.

Handlers know events and our two adapters (swarm, site directories), never the broker.
They are idempotent: the same event applied twice leaves the same state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import assert_never

from orchestrator import retry
from orchestrator.config import Settings
from orchestrator.errors import DomainConflict
from orchestrator.events import (
    InboundEvent,
    ResultEvent,
    ResultType,
    ServiceRef,
    SiteCreated,
    SiteDeleted,
    SiteUpdated,
    SiteUpserted,
)
from orchestrator.ports import Deployed, SiteDirsPort, SwarmPort
from orchestrator.spec import DOMAINS, FINGERPRINT, ServiceSpec, desired_service, service_name


@dataclass
class Context:
    settings: Settings
    swarm: SwarmPort
    sitedirs: SiteDirsPort
    # Domain ownership is checked and claimed under one lock so two racing sites cannot share a host.
    domains: asyncio.Lock = field(default_factory=asyncio.Lock)


async def upsert_site(event: SiteUpserted, ctx: Context) -> ResultEvent:
    """Make the site's service match the event's full desired state."""
    site, swarm = event.site, ctx.swarm
    name = service_name(site.id)
    async for attempt in retry.on_conflict():
        with attempt:
            current = await swarm.get(name)
            if current is not None and current.site_version > event.version:
                return _result(event, "site.stale", current, current.site_version)
            deleted_at = None if current else await swarm.tombstone(site.id)
            if deleted_at is not None and deleted_at >= event.version:
                return _result(event, "site.stale", None, deleted_at)
            # Policy (image, domains) refuses before anything is created on disk or in the swarm.
            spec = desired_service(site, event.version, ctx.settings, ctx.sitedirs.path(name))
            since = time.time()
            if current and current.fingerprint == spec.labels[FINGERPRINT] and current.site_version == event.version:
                deployed = current  # a redelivery: nothing to change
            else:
                deployed = await _apply(spec, current, ctx)
            if deleted_at is not None:
                await swarm.clear_tombstone(site.id)
    await swarm.wait_converged(deployed, spec.replicas, since, ctx.settings.converge_timeout_seconds)
    return _result(event, "site.deployed", deployed, event.version)


async def delete_site(event: SiteDeleted, ctx: Context) -> ResultEvent:
    """Remove the site's service and move its files to the trash. Deleting nothing succeeds."""
    site_id, swarm = event.site.id, ctx.swarm
    name = service_name(site_id)
    async for attempt in retry.on_conflict():
        with attempt:
            current = await swarm.get(name)
            if current is not None and current.site_version > event.version:
                return _result(event, "site.stale", current, current.site_version)
            deleted_at = await swarm.tombstone(site_id)
            if current is None and deleted_at is not None and deleted_at > event.version:
                return _result(event, "site.stale", None, None)
            # Refuse a planted link before removing anything, so a delete is never half done.
            await ctx.sitedirs.check(name)
            # The tombstone goes first: a late, older update must never resurrect the site.
            await swarm.set_tombstone(site_id, event.version)
            if current is not None:
                await swarm.remove(current)
                await swarm.wait_gone(current, ctx.settings.converge_timeout_seconds)
    await ctx.sitedirs.trash(name, tag=event.event_id.hex[:8])
    return _result(event, "site.removed", None, None)


async def _apply(spec: ServiceSpec, current: Deployed | None, ctx: Context) -> Deployed:
    async with ctx.domains:
        claimed = set(spec.labels[DOMAINS].split(","))
        for other in await ctx.swarm.managed():
            taken = claimed.intersection(other.domains)
            if other.name != spec.name and taken:
                raise DomainConflict(f"{', '.join(sorted(taken))} already routed to {other.name}")
        await ctx.sitedirs.ensure(spec.name)
        if current is None:
            return await ctx.swarm.create(spec)
        return await ctx.swarm.update(current, spec)


def _result(
    event: SiteUpserted | SiteDeleted,
    type_: ResultType,
    service: Deployed | None,
    applied_version: int | None,
) -> ResultEvent:
    return ResultEvent(
        type=type_,
        causation_id=event.event_id,
        site_id=event.site.id,
        version=event.version,
        applied_version=applied_version,
        service=ServiceRef(name=service.name, id=service.id, replicas=service.replicas) if service else None,
    )


async def dispatch(event: InboundEvent, ctx: Context) -> ResultEvent:
    """The handler of each event type; mypy fails here when a new type has none."""
    match event:
        case SiteCreated() | SiteUpdated():
            return await upsert_site(event, ctx)
        case SiteDeleted():
            return await delete_site(event, ctx)
        case _:
            assert_never(event)
