"""Security on the real stack: hostile events, paths, publishers, container hardening, secrets, TLS.

Site ids SEC + 0 to SEC + 99 (`scope.SECURITY_SITES`) belong to this module (explicit ids, never
`fresh_site_id()`), so it can run next to the other integration modules. Every test removes the
services, directories, links and outside target directories it made (`cleanup`), on top of the
wipe of this process's ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiormq.exceptions
import docker
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from support import (
    DeadLetters,
    Director,
    OrchestratorProcess,
    Results,
    eventually,
    fetch,
    scope,
    served,
    service,
    site_event,
    write_site,
)

from orchestrator.bus import broker
from orchestrator.config import Settings
from orchestrator.errors import BrokerUnavailable
from orchestrator_contract.results import SiteResult
from orchestrator_contract.sites import memory_bytes

# Unique per session: domains never collide with another session's sites in the shared swarm.
RUN = uuid.uuid4().hex[:6]
SEC = scope.SECURITY_SITES  # this module's 100 site ids
SECRET = "s3cr3t-value-XYZ"
ERROR_CODE = "x-orchestrator-error-code"
ERROR_MESSAGE = "x-orchestrator-error-message"
TOMBSTONE = "orchestrator-tombstone-"
TLS_DIR = Path(os.environ.get("RABBITMQ_TLS_DIR", "/etc/rabbitmq/tls"))
AMQPS_URL = "amqps://orchestrator:orchestrator@localhost:5671/"
ROOT = Path(__file__).resolve().parents[2]


def domain(site_id: int, label: str = "sec") -> str:
    return f"{label}{site_id}-{RUN}.example.com"


def name(site_id: int) -> str:
    return f"site_{site_id:04d}"


@dataclass
class Cleanup:
    """What a test made: its sites (service, tombstone, directory, trash) and outside paths."""

    sites: set[int] = field(default_factory=set)
    paths: list[Path] = field(default_factory=list)

    def site(self, *site_ids: int) -> None:
        for site_id in site_ids:
            assert SEC <= site_id < SEC + 100, "this module owns site ids SEC to SEC + 99"
            self.sites.add(site_id)

    def path(self, path: Path) -> Path:
        self.paths.append(path)
        return path


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


@pytest.fixture
def cleanup(api: docker.APIClient, sites_root: Path) -> Iterator[Cleanup]:
    made = Cleanup()
    yield made
    for site_id in sorted(made.sites):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_service(name(site_id))
        for config in api.configs(filters={"name": TOMBSTONE + name(site_id)}):
            if config["Spec"]["Name"] == TOMBSTONE + name(site_id):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_config(config["ID"])
        _remove(sites_root / name(site_id))
        for trashed in (sites_root / ".trash").glob(f"{name(site_id)}-*"):
            _remove(trashed)
    for path in made.paths:
        _remove(path)


async def failure(results: Results, site_id: int, timeout: float = 30) -> SiteResult:
    """The first result about `site_id`, which must be a `site.failed`."""
    result = await results.wait_for_site(site_id, timeout=timeout)
    assert result.type == "site.failed" and result.error is not None, result
    return result


def header(message: AbstractIncomingMessage, key: str) -> str:
    value = (message.headers or {}).get(key)
    return value.decode() if isinstance(value, bytes) else str(value)


def results_about(results: Results, site_id: int) -> list[SiteResult]:
    return [r for rs in results.by_cause.values() for r in rs if r.site_id == site_id]


async def logged(orchestrator: OrchestratorProcess, event_id: str, timeout: float = 30) -> str:
    """The orchestrator's log once it holds the "event handled" line of `event_id`."""

    def handled() -> bool:
        return any(
            line.get("msg") == "event handled" and line.get("event_id") == event_id for line in orchestrator.log_lines()
        )

    await eventually(handled, timeout)
    return orchestrator.log_path.read_text(errors="replace")


# --- 1. injection corpus ---------------------------------------------------------------------

CYRILLIC_A = "\u0430"
CORPUS: list[tuple[int, str, list[str], str]] = [
    (SEC, "backticks", ["evil.example.com`) || Host(`victim.example.com"], "invalid_event"),
    (SEC + 1, "parentheses", ["a.example.com) || (Host(`b.example.com`"], "invalid_event"),
    (SEC + 2, "or", ["a.example.com||b.example.com"], "invalid_event"),
    (SEC + 3, "and", ["a.example.com&&b.example.com"], "invalid_event"),
    (SEC + 4, "space", ["two words.example.com"], "invalid_event"),
    (SEC + 5, "newline", ["a.example.com\nHost(`x.example.com`)"], "invalid_event"),
    (SEC + 6, "trailing newline", ["trailing.example.com\n"], "invalid_event"),
    (SEC + 7, "cyrillic look-alike", [f"ex{CYRILLIC_A}mple.com"], "invalid_event"),
    (SEC + 8, "PathPrefix", ["PathPrefix(`/`)"], "invalid_event"),
    (SEC + 9, "HostRegexp", ["HostRegexp(`.*`)"], "invalid_event"),
    (SEC + 10, "64-char label", ["a" * 64 + ".example.com"], "invalid_event"),
    (SEC + 11, "254+ chars", [".".join(["a" * 63] * 4) + ".com"], "invalid_event"),
    (SEC + 12, "empty", [""], "invalid_event"),
    (SEC + 13, "port", ["a.example.com:8080"], "invalid_event"),
    (SEC + 14, "one bad among good", ["ok9514.example.com", "bad`.example.com"], "invalid_event"),
    (SEC + 15, "no domains", [], "invalid_event"),
    (SEC + 16, "wildcard", ["*.example.com"], "domain_not_allowed"),
    (SEC + 17, "IP address", ["127.0.0.1"], "domain_not_allowed"),
]
GOOD_AFTER_CORPUS = SEC + 19


async def test_hostile_domains_are_refused_and_the_consumer_keeps_deploying(
    director: Director,
    results: Results,
    dead_letters: DeadLetters,
    api: docker.APIClient,
    sites_root: Path,
    cleanup: Cleanup,
) -> None:
    """Every domain that could smuggle a Traefik rule (or is refused by policy) fails the event
    as a whole: a `site.failed` naming the reason without echoing the input, a dead letter with
    the reason in its headers, no service. A good event published after them still deploys."""
    cleanup.site(*(site_id for site_id, *_ in CORPUS), GOOD_AFTER_CORPUS)
    await dead_letters.take()
    published: dict[int, str] = {}
    for site_id, _, domains, _ in CORPUS:
        event = site_event("site.created", site_id, 1, domains=domains)
        published[site_id] = event["event_id"]
        await director.publish(event)
    write_site(sites_root, GOOD_AFTER_CORPUS, page="good after the corpus")
    good = site_event("site.created", GOOD_AFTER_CORPUS, 1, domains=[domain(GOOD_AFTER_CORPUS)])
    await director.publish(good)

    deployed = await results.wait_for(good["event_id"], timeout=90)
    assert deployed.type == "site.deployed", deployed
    for site_id, label, domains, code in CORPUS:
        result = await failure(results, site_id)
        assert result.error is not None
        assert (result.error.code, result.error.retryable) == (code, False), (label, result.error)
        if code == "invalid_event":
            for bad in filter(None, domains):
                assert bad not in result.error.message, (label, result.error.message)
        assert service(api, name(site_id)) is None, label
    letters = await dead_letters.collect(set(published.values()))
    for site_id, label, _, code in CORPUS:
        letter = letters[published[site_id]]
        assert header(letter, ERROR_CODE) == code, label
        assert header(letter, ERROR_MESSAGE), label
    spec = service(api, name(GOOD_AFTER_CORPUS))
    assert spec is not None
    rule = spec["Spec"]["Labels"][f"traefik.http.routers.{name(GOOD_AFTER_CORPUS)}.rule"]
    assert rule == f"Host(`{domain(GOOD_AFTER_CORPUS)}`)"
    # Nothing of the corpus reached Traefik: no router of any service mentions a smuggled matcher.
    for svc in api.services(filters={"label": "com.director.managed-by=orchestrator"}):
        for key, value in svc["Spec"]["Labels"].items():
            if key.endswith(".rule"):
                assert "PathPrefix" not in value and "HostRegexp" not in value and "victim" not in value


# --- 2. domain ownership ---------------------------------------------------------------------


async def test_a_domain_belongs_to_one_site_and_its_owner_may_republish_it(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, cleanup: Cleanup
) -> None:
    owner, other = SEC + 20, SEC + 21
    cleanup.site(owner, other)
    shared, own = domain(owner, "shared"), domain(other, "own")
    write_site(sites_root, owner, page=f"page of the owner {owner}")
    write_site(sites_root, other, page=f"page of the other {other}")
    first = site_event("site.created", owner, 1, domains=[shared])
    await director.publish(first)
    deployed = await results.wait_for(first["event_id"])
    assert deployed.type == "site.deployed", deployed
    await served(shared, f"page of the owner {owner}")

    # Another site claiming it: exactly, in upper case, or among other domains.
    for version, domains in enumerate(([shared], [own, shared.upper()]), start=1):
        claim = site_event("site.created", other, version, domains=domains)
        await director.publish(claim)
        result = await results.wait_for(claim["event_id"])
        assert result.type == "site.failed" and result.error is not None, result
        assert result.error.code == "domain_conflict" and result.error.retryable, result.error
        assert service(api, name(other)) is None
    # The other site deploys on its own domain, then an update reaching for the shared one fails
    # and leaves it as it was.
    mine = site_event("site.updated", other, 3, domains=[own])
    await director.publish(mine)
    assert (await results.wait_for(mine["event_id"])).type == "site.deployed"
    grab = site_event("site.updated", other, 4, domains=[own, shared])
    await director.publish(grab)
    result = await results.wait_for(grab["event_id"])
    assert result.type == "site.failed" and result.error is not None and result.error.code == "domain_conflict"
    labels = service(api, name(other))["Spec"]["Labels"]  # type: ignore[index]
    assert labels["com.director.domains"] == own and labels["com.director.version"] == "3"
    await served(own, f"page of the other {other}")
    await served(shared, f"page of the owner {owner}")

    # The owner re-publishing its own domain is no conflict.
    again = site_event("site.updated", owner, 2, domains=[shared])
    await director.publish(again)
    result = await results.wait_for(again["event_id"])
    assert result.type == "site.deployed" and result.applied_version == 2, result
    await served(shared, f"page of the owner {owner}")


async def test_a_domain_moving_between_sites_arrives_in_either_order(
    director: Director, results: Results, sites_root: Path, cleanup: Cleanup
) -> None:
    """Director moves a domain from A to B: B's claim may be processed before A lets go. The
    conflict is retried, so B gets the domain once A's update is applied."""
    old_owner, new_owner = SEC + 26, SEC + 27
    cleanup.site(old_owner, new_owner)
    moving = domain(old_owner, "moving")
    write_site(sites_root, old_owner, page=f"old owner {old_owner}")
    write_site(sites_root, new_owner, page=f"new owner {new_owner}")
    first = site_event("site.created", old_owner, 1, domains=[moving])
    await director.publish(first)
    assert (await results.wait_for(first["event_id"])).type == "site.deployed"

    claim = site_event("site.created", new_owner, 1, domains=[moving])
    release = site_event("site.updated", old_owner, 2, domains=[domain(old_owner, "elsewhere")])
    await director.publish(claim)
    await asyncio.sleep(0.5)
    await director.publish(release)

    assert (await results.wait_for(release["event_id"])).type == "site.deployed"
    result = await results.wait_for(claim["event_id"], timeout=60)
    assert result.type == "site.deployed", result
    await served(moving, f"new owner {new_owner}")


async def test_two_sites_racing_for_one_domain_get_one_winner(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, cleanup: Cleanup
) -> None:
    sites = (SEC + 22, SEC + 23)
    cleanup.site(*sites)
    contested = domain(sites[0], "race")
    for site_id in sites:
        write_site(sites_root, site_id, page=f"winner is {site_id}")
    events = {site_id: site_event("site.created", site_id, 1, domains=[contested]) for site_id in sites}

    await asyncio.gather(*(director.publish(event) for event in events.values()))
    outcome = {site_id: await results.wait_for(event["event_id"]) for site_id, event in events.items()}

    deployed = [site_id for site_id, r in outcome.items() if r.type == "site.deployed"]
    refused = [site_id for site_id, r in outcome.items() if r.type == "site.failed"]
    assert len(deployed) == 1 and len(refused) == 1, outcome
    error = outcome[refused[0]].error
    assert error is not None and error.code == "domain_conflict", error
    holders = [
        svc["Spec"]["Name"]
        for svc in api.services(filters={"label": "com.director.managed-by=orchestrator"})
        if contested in svc["Spec"]["Labels"].get("com.director.domains", "").split(",")
    ]
    assert holders == [name(deployed[0])]
    assert service(api, name(refused[0])) is None
    await served(contested, f"winner is {deployed[0]}")
    for _ in range(5):
        assert f"winner is {deployed[0]}" in (await fetch(contested)).text


# --- 3. symlinks -----------------------------------------------------------------------------


def outside_dir(sites_root: Path, cleanup: Cleanup, tag: str, files: dict[str, str]) -> Path:
    """A directory outside the sites root (next to it) holding `files`."""
    target = cleanup.path(sites_root.parent / f"outside-{tag}-{uuid.uuid4().hex[:6]}")
    target.mkdir()
    for file, text in files.items():
        (target / file).write_text(text)
    return target


def snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() if p.is_file() else "<dir>" for p in sorted(path.rglob("*"))}


async def test_a_site_directory_that_is_a_symlink_is_refused(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, cleanup: Cleanup
) -> None:
    site_id = SEC + 30
    cleanup.site(site_id)
    target = outside_dir(sites_root, cleanup, "dir", {"marker.txt": "do not touch"})
    before = snapshot(target)
    link = sites_root / name(site_id)
    link.symlink_to(target, target_is_directory=True)

    event = site_event("site.created", site_id, 1, domains=[domain(site_id)])
    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.failed" and result.error is not None, result
    assert result.error.code == "unsafe_path" and result.error.retryable is False, result.error
    assert service(api, name(site_id)) is None
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert snapshot(target) == before  # no public/ or private/ made through the link


async def test_a_static_site_whose_public_dir_is_a_symlink_is_refused(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, cleanup: Cleanup
) -> None:
    site_id = SEC + 31
    cleanup.site(site_id)
    target = outside_dir(sites_root, cleanup, "public", {"index.html": "another site's private page"})
    before = snapshot(target)
    site_dir = sites_root / name(site_id)
    site_dir.mkdir()
    (site_dir / "public").symlink_to(target, target_is_directory=True)

    event = site_event("site.created", site_id, 1, kind="static", domains=[domain(site_id)])
    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.failed" and result.error is not None, result
    assert result.error.code == "unsafe_path", result.error
    assert service(api, name(site_id)) is None
    assert (site_dir / "public").is_symlink()
    assert snapshot(target) == before
    assert (await fetch(domain(site_id))).status_code == 404


async def test_deleting_a_site_whose_directory_is_a_symlink_moves_nothing(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, cleanup: Cleanup
) -> None:
    """The package's behaviour: the tombstone is written (no older event may resurrect the site),
    then moving the directory to the trash is refused: `site.failed` with `unsafe_path`, and the
    link and its target stay where they are."""
    site_id = SEC + 32
    cleanup.site(site_id)
    target = outside_dir(sites_root, cleanup, "trash", {"marker.txt": "do not move"})
    before = snapshot(target)
    link = sites_root / name(site_id)
    link.symlink_to(target, target_is_directory=True)

    event = site_event("site.deleted", site_id, 1)
    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.failed" and result.error is not None, result
    assert result.error.code == "unsafe_path", result.error
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert snapshot(target) == before
    assert not list((sites_root / ".trash").glob(f"{name(site_id)}-*"))
    assert service(api, name(site_id)) is None


# --- 4. publisher authentication -------------------------------------------------------------


async def test_events_from_other_broker_users_or_without_user_id_are_dead_lettered(
    director: Director,
    results: Results,
    admin: AbstractRobustConnection,
    dead_letters: DeadLetters,
    sites_root: Path,
    api: docker.APIClient,
    cleanup: Cleanup,
) -> None:
    """The broker stamps `user_id` (it refuses a user_id other than the connection's user), so
    only Director's broker user is trusted. Anything else is dead-lettered as `unauthenticated`
    before the body is read: nothing is created, and no `site.failed` is published, since a
    stranger's message must not make the orchestrator say anything about a site."""
    by_guest, anonymous = SEC + 35, SEC + 36
    cleanup.site(by_guest, anonymous)
    await dead_letters.take()
    channel = await admin.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange("director.sites", aio_pika.ExchangeType.TOPIC, durable=True)
    forged = site_event("site.created", by_guest, 1, domains=[domain(by_guest)])
    await exchange.publish(
        aio_pika.Message(
            json.dumps(forged).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=forged["event_id"],
            user_id="guest",
        ),
        "site.created",
    )
    await channel.close()
    unsigned = site_event("site.created", anonymous, 1, domains=[domain(anonymous)])
    await director.publish(unsigned, user_id=None)

    letters = await dead_letters.collect({forged["event_id"], unsigned["event_id"]})
    assert header(letters[forged["event_id"]], ERROR_CODE) == "unauthenticated"
    assert "guest" in header(letters[forged["event_id"]], ERROR_MESSAGE)
    assert header(letters[unsigned["event_id"]], ERROR_CODE) == "unauthenticated"
    await asyncio.sleep(1)  # a result would have been published before the dead letter
    for site_id in (by_guest, anonymous):
        assert results_about(results, site_id) == []
        assert service(api, name(site_id)) is None
        assert not (sites_root / name(site_id)).exists()


async def test_the_broker_refuses_a_forged_user_id_and_writes_outside_directors_exchange(
    vhost: str, results: Results, api: docker.APIClient, cleanup: Cleanup
) -> None:
    """Director's broker user can neither claim another user_id nor write to the requeue exchange
    (whose messages the orchestrator trusts by their publisher header)."""
    site_id = SEC + 38
    cleanup.site(site_id)
    connection = await aio_pika.connect_robust(f"amqp://director:director@127.0.0.1:5672/{vhost}")
    try:
        event = site_event("site.created", site_id, 1, domains=[domain(site_id)])
        body = json.dumps(event).encode()
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("director.sites", ensure=False)  # Director may not declare it
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await exchange.publish(aio_pika.Message(body, user_id="orchestrator"), "site.created", timeout=10)

        channel = await connection.channel(publisher_confirms=True)
        requeue = await channel.get_exchange("orchestrator.requeue", ensure=False)
        headers = {"x-orchestrator-publisher": "director", "x-orchestrator-routing-key": "site.created"}
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await requeue.publish(aio_pika.Message(body, headers=headers, user_id="director"), "", timeout=10)
    finally:
        await connection.close()
    await asyncio.sleep(2)
    assert results_about(results, site_id) == []
    assert service(api, name(site_id)) is None


async def test_replaying_dead_letters_does_not_launder_an_unauthenticated_event(
    orchestrator: OrchestratorProcess,
    results: Results,
    admin: AbstractRobustConnection,
    dead_letters: DeadLetters,
    api: docker.APIClient,
    cleanup: Cleanup,
) -> None:
    site_id = SEC + 37
    cleanup.site(site_id)
    await dead_letters.take()
    channel = await admin.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange("director.sites", aio_pika.ExchangeType.TOPIC, durable=True)
    forged = site_event("site.created", site_id, 1, domains=[domain(site_id)])
    await exchange.publish(
        aio_pika.Message(json.dumps(forged).encode(), message_id=forged["event_id"], user_id="guest"),
        "site.created",
    )
    await channel.close()

    async def dead_lettered() -> bool:
        listed = await asyncio.to_thread(orchestrator.cli, "dead-letters", "list", "--json", "--site", str(site_id))
        assert listed.returncode == 0, listed.stderr
        return any(letter["reason"] == "unauthenticated" for letter in json.loads(listed.stdout))

    await eventually(dead_lettered, 30, interval=1)
    # An operator retries what failed for this site.
    replayed = await asyncio.to_thread(orchestrator.cli, "dead-letters", "replay", "--site", str(site_id))
    assert replayed.returncode == 0, replayed.stderr

    # Nothing was republished (what happened, not a window waited out): the letter was skipped and
    # is still where it was, and the orchestrator said nothing about the site.
    assert "replayed 0 dead letters" in replayed.stdout, replayed.stdout
    assert "skipped 1 dead letters from an unproven publisher" in replayed.stdout, replayed.stdout
    assert await dead_lettered()
    assert forged["event_id"] not in results.by_cause
    assert service(api, name(site_id)) is None


# --- 5. hardening ----------------------------------------------------------------------------


def under(path: str, root: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, base]) == base and real != base


async def test_a_dynamic_site_runs_hardened(
    director: Director, results: Results, sites_root: Path, api: docker.APIClient, cleanup: Cleanup
) -> None:
    site_id = SEC + 40
    cleanup.site(site_id)
    settings = Settings()
    write_site(sites_root, site_id, page="hardened and serving")
    event = site_event("site.created", site_id, 1, domains=[domain(site_id)])
    await director.publish(event)
    assert (await results.wait_for(event["event_id"])).type == "site.deployed"
    await served(domain(site_id), "hardened and serving")

    spec = service(api, name(site_id))["Spec"]  # type: ignore[index]
    task = spec["TaskTemplate"]
    container = task["ContainerSpec"]
    assert container["ReadOnly"] is True
    assert container["Init"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert container.get("CapabilityAdd") is None and settings.cap_add == []
    uid = settings.site_uid_base + site_id
    assert container["User"] == f"{uid}:{uid}"
    assert task["Resources"]["Limits"]["Pids"] == settings.pids_limit
    assert container["Healthcheck"]["Test"][0] == "CMD-SHELL"
    assert not container.get("Privileges"), container.get("Privileges")
    assert not container.get("Sysctls"), container.get("Sysctls")
    mounts = container["Mounts"]
    assert {m["Target"] for m in mounts if m["Type"] == "tmpfs"} == {"/tmp", "/run"}
    assert {m["Type"] for m in mounts} <= {"bind", "tmpfs"}
    for mount in mounts:
        assert "docker.sock" not in mount.get("Source", "") and "docker" not in mount["Target"]
        if mount["Type"] == "bind":
            assert under(mount["Source"], sites_root), mount
    limits = task["Resources"]["Limits"]
    assert limits["NanoCPUs"] > 0 and limits["MemoryBytes"] > 0
    assert task["LogDriver"]["Name"] == "json-file"
    assert task["LogDriver"]["Options"]["max-size"] == settings.log_max_size
    assert task["LogDriver"]["Options"]["max-file"] == str(settings.log_max_files)
    assert not spec.get("EndpointSpec", {}).get("Ports"), "a site must not publish ports on the host"

    # What the engine actually runs.
    running = api.containers(filters={"label": f"com.docker.swarm.service.name={name(site_id)}"})
    assert running
    host = api.inspect_container(running[0]["Id"])["HostConfig"]
    assert host["Privileged"] is False
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["NetworkMode"] != "host" and host["PidMode"] != "host" and host.get("IpcMode") != "host"
    assert host["NanoCpus"] == limits["NanoCPUs"] and host["Memory"] == limits["MemoryBytes"]
    assert host["PidsLimit"] == settings.pids_limit
    top = api.top(running[0]["Id"], ps_args="-o pid,uid,comm")
    uids = {int(process[top["Titles"].index("UID")]) for process in top["Processes"]}
    assert uids == {uid}, top  # no process of the site runs as root


async def test_resource_requests_above_the_ceilings_are_clamped(
    director: Director, results: Results, api: docker.APIClient, sites_root: Path, cleanup: Cleanup
) -> None:
    """Documented behaviour (policy.clamp_resources): a request above the operator's ceilings
    (ORCHESTRATOR_MAX_CPUS, ORCHESTRATOR_MAX_MEMORY) is deployed with the ceilings, not refused."""
    site_id = SEC + 41
    cleanup.site(site_id)
    settings = Settings()
    write_site(sites_root, site_id, page="clamped")
    event = site_event("site.created", site_id, 1, resources={"cpus": 64, "memory": "100Gi"})
    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.deployed", result
    limits = service(api, name(site_id))["Spec"]["TaskTemplate"]["Resources"]["Limits"]  # type: ignore[index]
    assert limits == {
        "NanoCPUs": round(settings.max_cpus * 1e9),
        "MemoryBytes": memory_bytes(settings.max_memory),
        "Pids": settings.pids_limit,
    }


# --- 6. env safety ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("site_id", "env"),
    [(SEC + 44, {"PORT": "8080"}), (SEC + 45, {"1BAD": "x"}), (SEC + 46, {"A=B": "x"}), (SEC + 47, {"SITE_DIR": "/"})],
    ids=["reserved PORT", "leading digit", "equals sign", "reserved SITE_DIR"],
)
async def test_reserved_or_malformed_env_keys_make_the_event_invalid(
    director: Director, results: Results, api: docker.APIClient, cleanup: Cleanup, site_id: int, env: dict[str, str]
) -> None:
    cleanup.site(site_id)
    event = site_event("site.created", site_id, 1, env=env)
    await director.publish(event)

    result = await failure(results, site_id)
    assert result.error is not None and result.error.code == "invalid_event", result.error
    assert service(api, name(site_id)) is None


async def test_secret_env_values_stay_out_of_errors_dead_letter_headers_and_logs(
    director: Director,
    results: Results,
    dead_letters: DeadLetters,
    orchestrator: OrchestratorProcess,
    api: docker.APIClient,
    cleanup: Cleanup,
) -> None:
    bad_domain, bad_value = SEC + 48, SEC + 49
    cleanup.site(bad_domain, bad_value)
    await dead_letters.take()
    events = [
        site_event("site.created", bad_domain, 1, domains=["bad`.example.com"], env={"API_TOKEN": SECRET}),
        # The value itself is what is wrong: the error must name the key, not echo the value.
        site_event("site.created", bad_value, 1, env={"API_TOKEN": SECRET + "\x00"}),
    ]
    for event in events:
        await director.publish(event)

    for event in events:
        result = await failure(results, event["site"]["id"])
        assert result.error is not None and result.error.code == "invalid_event", result.error
        assert SECRET not in result.model_dump_json()
        assert service(api, name(event["site"]["id"])) is None
    assert "API_TOKEN" in (await failure(results, bad_value)).error.message  # type: ignore[union-attr]
    letters = await dead_letters.collect({e["event_id"] for e in events})
    for letter in letters.values():
        assert SECRET not in json.dumps({k: str(v) for k, v in (letter.headers or {}).items()})
    for event in events:
        assert SECRET not in await logged(orchestrator, event["event_id"])
    assert all(SECRET.encode() not in m.body for m in results.messages)


async def test_secret_env_value_of_a_valid_site_stays_out_of_results_and_logs(
    director: Director,
    results: Results,
    orchestrator: OrchestratorProcess,
    api: docker.APIClient,
    sites_root: Path,
    cleanup: Cleanup,
) -> None:
    site_id = SEC + 43
    cleanup.site(site_id)
    write_site(sites_root, site_id, page="secret keeper")
    event = site_event("site.created", site_id, 1, env={"API_TOKEN": SECRET})
    await director.publish(event)
    result = await results.wait_for(event["event_id"])

    assert result.type == "site.deployed", result
    env = service(api, name(site_id))["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]  # type: ignore[index]
    assert f"API_TOKEN={SECRET}" in env  # the site gets it...
    assert SECRET not in await logged(orchestrator, event["event_id"])  # ...nobody else does
    assert all(SECRET.encode() not in m.body for m in results.messages)


# --- 7. image policy -------------------------------------------------------------------------

REGISTRY = Settings().registry  # custom images' registry (the local stack's)


@pytest.mark.parametrize(
    ("site_id", "image", "code"),
    [
        (SEC + 50, {"name": "busybox:latest", "custom": False}, "image_not_allowed"),
        (SEC + 51, {"name": "evil.example.com/x:1", "custom": True}, "image_not_allowed"),
        (SEC + 52, {"name": "localhost:5000/x:1", "custom": True}, "image_not_allowed"),
        (SEC + 53, {"name": f"{REGISTRY}-evil/x:1", "custom": True}, "image_not_allowed"),
        (SEC + 54, {"name": "--privileged", "custom": True}, "invalid_event"),
        (SEC + 55, {"name": "--privileged", "custom": False}, "invalid_event"),
        (SEC + 56, {"name": "director/base:latest --privileged", "custom": False}, "invalid_event"),
        (
            SEC + 57,
            {"name": f"{REGISTRY}/site_0042/private-app:1", "custom": True},
            "image_not_allowed",
        ),
        (SEC + 58, {"name": f"{REGISTRY}/site_0042:1", "custom": True}, "image_not_allowed"),
    ],
    ids=[
        "default not allowed",
        "custom other registry",
        "custom localhost registry",
        "custom look-alike registry",
        "option custom",
        "option default",
        "option suffix",
        "another tenant's image",
        "another tenant's built image",
    ],
)
async def test_images_outside_the_policy_are_refused(
    director: Director,
    results: Results,
    api: docker.APIClient,
    sites_root: Path,
    cleanup: Cleanup,
    site_id: int,
    image: dict[str, Any],
    code: str,
) -> None:
    cleanup.site(site_id)
    event = site_event("site.created", site_id, 1, image=image)
    await director.publish(event)

    result = await failure(results, site_id)
    assert result.error is not None and result.error.code == code, result.error
    assert result.error.retryable is False
    assert service(api, name(site_id)) is None
    assert not (sites_root / name(site_id)).exists()  # refused before anything was created


# --- TLS to the broker -----------------------------------------------------------------------


def tls_settings(**overrides: Path) -> Settings:
    if not (TLS_DIR / "ca.pem").exists():
        pytest.skip(f"no broker CA in {TLS_DIR}: run scripts/stack-up.sh")
    files = {
        "amqp_ca_file": TLS_DIR / "ca.pem",
        "amqp_cert_file": TLS_DIR / "client.pem",
        "amqp_key_file": TLS_DIR / "client.key",
    }
    return Settings(**(files | overrides))


def rogue_ca(directory: Path) -> tuple[Path, Path]:
    """A self-signed CA (cert, key) the broker has never heard of."""
    cert, key = directory / "rogue.pem", directory / "rogue.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rogue"]
    command += ["-keyout", str(key), "-out", str(cert), "-addext", "basicConstraints=critical,CA:TRUE"]
    command += ["-addext", "keyUsage=critical,keyCertSign,digitalSignature"]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    return cert, key


async def _connect_once(url: str, settings: Settings) -> AbstractRobustConnection:
    stop = asyncio.Event()
    stop.set()  # connect() gives up after the first failure instead of waiting for the broker
    async with asyncio.timeout(30):
        return await broker.connect(url, settings, stop)


@pytest.mark.parametrize("url", [AMQPS_URL, AMQPS_URL.replace("localhost", "127.0.0.1")], ids=["localhost", "ip"])
async def test_amqps_with_the_ca_and_a_client_cert_connects(url: str) -> None:
    connection = await _connect_once(url, tls_settings())
    try:
        channel = await connection.channel()
        await channel.get_exchange("amq.topic")  # a passive declare: a round trip over TLS
        assert not channel.is_closed
    finally:
        await connection.close()


async def test_amqps_with_a_wrong_ca_fails(tmp_path: Path) -> None:
    cert, _ = rogue_ca(tmp_path)
    # broker.connect says it as BrokerUnavailable, with the TLS error's own words (and as its cause).
    with pytest.raises((BrokerUnavailable, ssl.SSLError, aiormq.exceptions.AMQPConnectionError)) as info:
        await _connect_once(AMQPS_URL, tls_settings(amqp_ca_file=cert))
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


async def test_amqps_with_a_client_cert_from_another_ca_is_refused(tmp_path: Path) -> None:
    cert, key = rogue_ca(tmp_path)
    with pytest.raises((BrokerUnavailable, ssl.SSLError, ConnectionError, aiormq.exceptions.AMQPError)):
        connection = await _connect_once(AMQPS_URL, tls_settings(amqp_cert_file=cert, amqp_key_file=key))
        await connection.close()


def test_the_broker_listens_on_loopback_only() -> None:
    listeners = subprocess.run(
        ["rabbitmq-diagnostics", "-q", "listeners"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    amqp = [line for line in listeners.splitlines() if "protocol: amqp" in line]
    assert any("port: 5672" in line for line in amqp) and any("port: 5671" in line for line in amqp), listeners
    for line in amqp:
        assert line.startswith(("Interface: 127.0.0.1,", "Interface: ::1,")), line
