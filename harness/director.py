"""Director's side of the bus: events as Director publishes them, the results it reads, and the
files a site owner would have uploaded."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from harness.stack import INBOUND, RESULTS
from orchestrator_contract.certificates import SiteCertificate
from orchestrator_contract.results import SiteHealth, SiteResult


def site_event(
    type_: str,
    site_id: int,
    version: int,
    *,
    domains: list[str] | None = None,
    kind: str = "dynamic",
    serving: bool = True,
    image: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event as Director publishes it."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "occurred_at": datetime.now(UTC).isoformat(),
        "version": version,
    }
    if type_ in ("site.deleted", "site.restart_requested"):
        event["site"] = {"id": site_id}
        return event
    if type_ == "site.image_requested":  # `image` is the recipe
        event["site"] = {"id": site_id}
        event["image"] = image or {"parent": "director/base:latest", "packages": []}
        return event
    event["site"] = {
        "id": site_id,
        "name": f"test site {site_id}",
        "kind": kind,
        "domains": domains if domains is not None else [f"site{site_id}.test.example.com"],
        "image": image or {"name": "director/base:latest", "custom": False},
        "resources": resources or {"cpus": 0.25, "memory": "64Mi"},
        "serving": serving,
        "env": env or {},
    }
    return event


class Director:
    """Publishes like Director: durable exchange, persistent JSON, message_id = event_id, user_id set."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self.connection = connection
        self.channel: Any = None

    async def start(self) -> None:
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.get_exchange(
            INBOUND, ensure=False
        )  # the broker's, not Director's to declare

    async def publish(
        self,
        event: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        routing_key: str | None = None,
        user_id: str | None = "director",
        message_id: str | None = None,
    ) -> None:
        if body is None:
            assert event is not None
            body = json.dumps(event).encode()
        if routing_key is None:
            assert event is not None
            routing_key = event["type"]
        await self.exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id or (event or {}).get("event_id") or str(uuid.uuid4()),
                user_id=user_id,
            ),
            routing_key,
        )


class Results:
    """Collects every result event the orchestrator publishes, keyed by the inbound event id, as
    Director (`director.replies.*` queues) or the observer (`observer.*`) reads them."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        queue: str | None = None,
        binding: str = "#",
        prefix: str = "director.replies.",
    ) -> None:
        """Listen on a queue of the connection's user, `<prefix>results-<random>`, bound with
        `binding`; or on a durable `queue` that survives broker restarts (Director's
        `orchestrator.site-results`)."""
        self.connection = connection
        self.queue_name = queue
        self.binding = binding
        self.prefix = prefix
        self.by_cause: dict[str, list[SiteResult]] = {}
        self.messages: list[AbstractIncomingMessage] = []
        self.health: list[SiteHealth] = []
        self.certificates: list[SiteCertificate] = []
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        channel = await self.connection.channel()
        if self.queue_name:
            queue = await channel.declare_queue(self.queue_name, passive=True)
        else:
            name = f"{self.prefix}results-{uuid.uuid4().hex[:12]}"
            queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
            await queue.bind(RESULTS, self.binding)  # the orchestrator's exchange: bound by name, never declared
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if (message.routing_key or "").endswith(".metrics"):
            return  # periodic figures (tests/integration/test_metrics.py reads them)
        if message.routing_key == "site.certificate":
            certificate = SiteCertificate.model_validate_json(message.body)
            async with self._changed:
                self.certificates.append(certificate)
                self._changed.notify_all()
            return
        if message.routing_key == "site.health":
            health = SiteHealth.model_validate_json(message.body)
            async with self._changed:
                self.health.append(health)
                self._changed.notify_all()
            return
        result = SiteResult.model_validate_json(message.body)
        async with self._changed:
            self.messages.append(message)
            self.by_cause.setdefault(str(result.causation_id), []).append(result)
            self._changed.notify_all()

    async def wait_for(self, event_id: str, timeout: float = 90) -> SiteResult:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: event_id in self.by_cause)
        return self.by_cause[event_id][0]

    async def wait_health(self, site_id: int, count: int, timeout: float = 60) -> list[SiteHealth]:
        """Until `count` site.health events arrived for the site; all of them."""

        def of_site() -> list[SiteHealth]:
            return [h for h in self.health if h.site_id == site_id]

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(of_site()) >= count)
        return of_site()

    async def wait_certificate(self, domain: str, status: str, timeout: float = 60) -> SiteCertificate:
        """The first `site.certificate` of `domain` with `status`."""

        def found() -> SiteCertificate | None:
            return next((c for c in self.certificates if c.domain == domain and c.status == status), None)

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        certificate = found()
        assert certificate is not None
        return certificate

    def certificate_statuses(self, domain: str) -> list[str]:
        return [c.status for c in self.certificates if c.domain == domain]

    async def wait_total(self, count: int, timeout: float) -> None:
        """Until `count` results arrived in all."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.messages) >= count)

    async def wait_for_site(self, site_id: int, timeout: float = 30) -> SiteResult:
        """The first result about `site_id` (for events whose id could not be read)."""

        def found() -> SiteResult | None:
            return next((r for rs in self.by_cause.values() for r in rs if r.site_id == site_id), None)

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        result = found()
        assert result is not None
        return result


async def publish_reliably(director: Director, event: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Director's side: retry until the broker confirms (duplicates are fine, loss is not)."""
    deadline = time.monotonic() + 180
    while True:
        try:
            async with asyncio.timeout(10):
                await director.publish(event, **kwargs)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def deploy(director: Director, results: Results, event: dict[str, Any], timeout: float = 90) -> SiteResult:
    """Publish as Director and wait for the event's result."""
    await director.publish(event)
    return await results.wait_for(str(event["event_id"]), timeout=timeout)


def write_site(sites_root: Path, site_id: int, *, page: str, run_sh: bool = True) -> Path:
    """Files a site owner would have uploaded: a page and a run.sh serving it with busybox httpd."""
    site_dir = sites_root / f"site_{site_id:04d}"
    (site_dir / "public").mkdir(parents=True, exist_ok=True)
    (site_dir / "private").mkdir(exist_ok=True)
    (site_dir / "public" / "index.html").write_text(page)
    if run_sh:
        (site_dir / "run.sh").write_text('#!/bin/sh\nexec httpd -f -p "$PORT" -h /site/public\n')
    return site_dir


def write_jq_site(sites_root: Path, site_id: int) -> None:
    """A run.sh that needs jq (not in the default image) to make the page it serves."""
    site_dir = sites_root / f"site_{site_id:04d}"
    (site_dir / "public").mkdir(parents=True, exist_ok=True)
    (site_dir / "private").mkdir(exist_ok=True)
    (site_dir / "run.sh").write_text(
        "#!/bin/sh\nset -e\nmkdir -p /tmp/www\n"
        f'jq -rn \'"made by jq for site " + "{site_id}"\' >/tmp/www/index.html\n'
        'exec httpd -f -p "$PORT" -h /tmp/www\n'
    )
