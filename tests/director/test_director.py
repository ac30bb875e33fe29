"""Director end to end as a school deploys it: only the client package (`orchestrator_client`) and
only Director's and the observer's broker credentials, never the admin's. One site lives through
its life in one test (deploy, files, restart, logs, health, a terminal, delete), the observer
watching its results; the synchronous API serves a second one from a plain test, as a Django
view would; and whatever the client asks outside a user's rights is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import pytest
from support.web import served

from harness.rabbit import LOCAL_BROKER
from orchestrator_client import Client, Subscription, SyncClient
from orchestrator_client.errors import (
    AccessRefused,
    NoDatabase,
    NotFound,
    PublishRefused,
    SiteNotFound,
    UnsafePath,
)
from orchestrator_client.sync import SyncSubscription
from orchestrator_contract.results import SiteHealth, SiteResult

R = TypeVar("R", SiteResult, SiteHealth)

# The site's server stops (exit 1) once `private/stop` appears; its next task removes it and serves.
RUN_SH = b"""#!/bin/sh
echo "boot $GREETING"
rm -f /site/private/stop
httpd -f -p "$PORT" -h /site/public &
while [ ! -e /site/private/stop ]; do sleep 0.2; done
echo "stopping"
exit 1
"""


def site(site_id: int, *, serving: bool = True) -> dict[str, object]:
    return {
        "id": site_id,
        "name": f"client site {site_id}",
        "kind": "dynamic",
        "domains": [f"client{site_id}.example.com"],
        "resources": {"cpus": 0.25, "memory": "64Mi"},
        "serving": serving,
        "env": {"GREETING": "hello-from-director"},
    }


@pytest.fixture
async def director(vhost: str) -> AsyncIterator[Client]:
    async with await Client.connect(LOCAL_BROKER.url("director", vhost)) as client:
        yield client


@pytest.fixture
async def observer(vhost: str) -> AsyncIterator[Client]:
    async with await Client.connect(LOCAL_BROKER.url("observer", vhost)) as client:
        yield client


async def first(reports: Subscription, kind: type[R], match: Callable[[R], bool], timeout: float = 90) -> R:
    """The first report of `kind` that matches; everything read on the way is acknowledged."""
    async with asyncio.timeout(timeout):
        async for delivery in reports:
            await delivery.ack()
            if isinstance(delivery.message, kind) and match(delivery.message):
                return delivery.message
    raise AssertionError("unreachable: a subscription ends only with its context")


async def test_a_site_through_its_life_with_directors_client(director: Client, observer: Client, site_id: int) -> None:
    host, page = f"client{site_id}.example.com", f"<h1>page of site {site_id}</h1>".encode()
    async with director.results.subscribe() as results, observer.results.watch() as watched:
        # Deployed, not serving yet (its directory has no run.sh), as Director reads it from its
        # durable queue and the observer from its own.
        created = await director.sites.publish_created(site(site_id, serving=False), version=1)
        deployed = await first(results, SiteResult, lambda r: r.causation_id == created.event_id)
        assert (deployed.type, deployed.site_id, deployed.applied_version) == ("site.deployed", site_id, 1), deployed
        seen = await first(watched, SiteResult, lambda r: r.causation_id == created.event_id)
        assert seen == deployed

        # The owner's files, written and read back over the bus.
        await director.files.write(site_id, "public/index.html", page)
        await director.files.write(site_id, "run.sh", RUN_SH, mode=0o755)
        assert await director.files.read_all(site_id, "public/index.html") == page
        assert {e.name for e in (await director.files.list(site_id)).entries} >= {"public", "private", "run.sh"}
        with pytest.raises(UnsafePath):
            await director.files.read_all(site_id, "../site_0001/run.sh")

        # Serving: run.sh starts and the page is served through Traefik; a restart keeps it so.
        updated = await director.sites.publish_updated(site(site_id), version=2)
        serving = await first(results, SiteResult, lambda r: r.causation_id == updated.event_id)
        assert (serving.type, serving.applied_version) == ("site.deployed", 2) and serving.probe, serving
        await served(host, page.decode())
        restart = await director.sites.publish_restart_requested(site_id, version=2)
        restarted = await first(results, SiteResult, lambda r: r.causation_id == restart.event_id)
        assert restarted.type == "site.deployed" and restarted.probe is not None, restarted
        await served(host, page.decode())

        # Its log as it comes (env values masked), through the server's stop and its restart, which
        # the observer hears as health: down, then healthy again.
        async with director.logs.follow(site_id, lines=20) as follow:
            await asyncio.sleep(1.5)  # watched from its first healthy look
            await director.files.write(site_id, "private/stop", b"")
            down = await first(watched, SiteHealth, lambda h: h.site_id == site_id, timeout=30)
            up = await first(watched, SiteHealth, lambda h: h.site_id == site_id, timeout=60)
            assert (down.status, up.status) == ("down", "healthy"), (down, up)
            texts: list[str] = []
            async with asyncio.timeout(30):
                while texts.count("boot ***") < 2 or "stopping" not in texts:
                    update = await follow.next(30)
                    assert update is not None
                    texts += [line.text for line in update.lines]
        assert not any("hello-from-director" in text for text in texts)
        assert [line.text for line in await director.logs.tail(site_id, lines=50)].count("boot ***") >= 2

        # A shell in the site's image.
        async with director.terminals.open(site_id, cols=100, rows=30) as term:
            await term.input("echo $((6 * 7)) in $(pwd)\n")
            assert b"42 in /site" in await term.read_until(b"42 in /site", 30)
            await term.resize(120, 40)
        assert term.ended is not None and term.ended.type == "closed"
        with pytest.raises(NotFound):  # no such site
            async with director.terminals.open(site_id + 99_000):
                pass

        # Deleted: the service goes, the files go to the trash.
        deleted = await director.sites.publish_deleted(site_id, version=3)
        removed = await first(results, SiteResult, lambda r: r.causation_id == deleted.event_id)
        assert removed.type == "site.removed", removed
        with pytest.raises(SiteNotFound):
            await director.files.stat(site_id)


async def test_the_observer_reads_site_results_and_is_refused_the_rest(observer: Client, site_id: int) -> None:
    with pytest.raises(PublishRefused, match="ACCESS_REFUSED"):
        await observer.sites.publish_created(site(site_id), version=1)
    with pytest.raises(AccessRefused):  # Director's queue: reading it would take Director's results
        async with observer.results.subscribe():
            pass
    with pytest.raises(AccessRefused):  # drift reports are the operators'
        async with observer.results.watch(("#",)):
            pass
    with pytest.raises(AccessRefused):
        async with observer.terminals.open(site_id):
            pass
    with pytest.raises(AccessRefused):  # files and logs: it may not even hear a reply
        await observer.files.stat(site_id)
    async with observer.results.watch(("site.deployed", "site.health"), name=f"audit-{site_id}") as watched:
        assert watched.queue == f"observer.audit-{site_id}"


def wait_for(reports: SyncSubscription, event_id: object, timeout: float = 90) -> SiteResult:
    while True:
        delivery = reports.next(timeout)
        delivery.ack()
        if isinstance(delivery.message, SiteResult) and delivery.message.causation_id == event_id:
            return delivery.message


def test_the_sync_client_works_without_an_event_loop_as_a_django_view_would(vhost: str, site_id: int) -> None:
    with SyncClient.connect(LOCAL_BROKER.url("director", vhost)) as client, client.results.watch() as results:
        created = client.sites.publish_created(site(site_id, serving=False), version=1)
        assert wait_for(results, created.event_id).type == "site.deployed"

        client.files.mkdir(site_id, "public/docs", parents=True)
        written = client.files.write(site_id, "public/docs/a.txt", b"from a view")
        assert client.files.read_all(site_id, "public/docs/a.txt") == b"from a view"
        data, read = client.files.read(site_id, "public/docs/a.txt", offset=5)
        assert (data, read.etag) == (b"a view", written.etag)
        names: Iterator[str] = (entry.name for entry in client.files.list_all(site_id, "public/docs"))
        assert list(names) == ["a.txt"]
        with pytest.raises(UnsafePath):
            client.files.stat(site_id, "/etc/passwd")
        with pytest.raises(NoDatabase):  # a database request, on `director.databases`: it asked for none
            client.databases.credentials(site_id)

        deleted = client.sites.publish_deleted(site_id, version=2)
        assert wait_for(results, deleted.event_id).type == "site.removed"
