"""Publishing Director's site events.

**The version rule.** Every event carries the site's `version`, a number Director raises with
every change of the site (a counter in the site's row, or its change time in microseconds): never
lower than one it published before for that site, up to 2^63 - 1. The orchestrator applies the
newest version it has seen and answers an older one with `site.stale` without changing anything,
so events may arrive late, twice or out of order. `site.created` and `site.updated` carry the full
desired state (an upsert, never a delta); `site.deleted` removes the service (the site's files go
to the trash) and a later create or update of a version up to the deleted one stays deleted;
`site.restart_requested` carries the site's current version and changes nothing but the tasks;
`site.image_requested` carries the image's own version (one per recipe of the site).

**How an event is published.** To `director.sites`, routing key = the event's type, persistent,
`message_id` = `event_id`, `user_id` = the connection's user, the contract's version header, with
`mandatory` set and on a channel in confirm mode: a publish returns once the broker has the
event in the orchestrator's queue, and raises `PublishRefused` when no queue took it or a full one
refused it, `BrokerUnavailable` without a connection. Either way nothing was queued, and
publishing the same event (the same `event_id` and `version`) again is safe: results are
delivered at least once and carry the event's id as `causation_id` to deduplicate by.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from orchestrator_client import publishing
from orchestrator_contract import version as contract
from orchestrator_contract.sites import (
    ImageRecipe,
    Site,
    SiteCreated,
    SiteDeleted,
    SiteEvent,
    SiteImageRequested,
    SiteRef,
    SiteRestartRequested,
    SiteUpdated,
)


class Sites:
    def __init__(self, connection: AbstractRobustConnection, exchange: str, user_id: str, timeout: float) -> None:
        self._connection = connection
        self._exchange_name = exchange
        self._user_id = user_id
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def publish(self, event: SiteEvent) -> None:
        """Publish any site event of the contract (see the module's rules)."""
        exchange = await self._ready()
        msg = publishing.message(
            event.model_dump_json().encode(),
            user_id=self._user_id,
            message_id=str(event.event_id),
            headers={contract.HEADER: contract.VERSION},
        )
        await publishing.publish(exchange, event.type, msg, mandatory=True, timeout=self._timeout)

    async def publish_created(
        self, site: Site | Mapping[str, Any], version: int, *, event_id: uuid.UUID | None = None
    ) -> SiteCreated:
        """The site exists in Director with this full desired state; the event published."""
        event = SiteCreated(type="site.created", site=_site(site), **_envelope(version, event_id))
        await self.publish(event)
        return event

    async def publish_updated(
        self, site: Site | Mapping[str, Any], version: int, *, event_id: uuid.UUID | None = None
    ) -> SiteUpdated:
        """The site changed in Director: its full desired state; the event published."""
        event = SiteUpdated(type="site.updated", site=_site(site), **_envelope(version, event_id))
        await self.publish(event)
        return event

    async def publish_deleted(self, site_id: int, version: int, *, event_id: uuid.UUID | None = None) -> SiteDeleted:
        """The site was deleted in Director; the event published."""
        event = SiteDeleted(type="site.deleted", site=SiteRef(id=site_id), **_envelope(version, event_id))
        await self.publish(event)
        return event

    async def publish_restart_requested(
        self, site_id: int, version: int, *, event_id: uuid.UUID | None = None
    ) -> SiteRestartRequested:
        """Fresh tasks of the site's current spec (`version`: its current one); the event published."""
        event = SiteRestartRequested(
            type="site.restart_requested", site=SiteRef(id=site_id), **_envelope(version, event_id)
        )
        await self.publish(event)
        return event

    async def publish_image_requested(
        self, site_id: int, version: int, recipe: ImageRecipe | Mapping[str, Any], *, event_id: uuid.UUID | None = None
    ) -> SiteImageRequested:
        """Build the site's custom image from `recipe` (`version`: the image's); the event published."""
        event = SiteImageRequested(
            type="site.image_requested",
            site=SiteRef(id=site_id),
            image=recipe if isinstance(recipe, ImageRecipe) else ImageRecipe.model_validate(recipe),
            **_envelope(version, event_id),
        )
        await self.publish(event)
        return event

    async def _ready(self) -> AbstractExchange:
        async with self._lock:
            if self._channel is None or self._channel.is_closed or self._exchange is None:
                # A channel the broker closed (a refused publish) is replaced by a fresh one.
                self._channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await self._channel.get_exchange(self._exchange_name, ensure=False)
            return self._exchange


def _site(site: Site | Mapping[str, Any]) -> Site:
    return site if isinstance(site, Site) else Site.model_validate(site)


def _envelope(version: int, event_id: uuid.UUID | None) -> dict[str, Any]:
    return {"event_id": event_id or uuid.uuid4(), "occurred_at": datetime.now(UTC), "version": version}
