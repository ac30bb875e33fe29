"""Director's client package (clients/python) without a broker: its errors cover the contract's
codes, the sync API mirrors the async one, the contract's version decides what is read, and the
loop thread behind the sync API passes results, errors and iterations through."""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiormq.exceptions
import pytest
from aio_pika.exceptions import ChannelClosed
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from orchestrator.config import Settings
from orchestrator.schemas.metrics_examples import metrics_examples
from orchestrator_client import (
    client,
    connection,
    databases,
    errors,
    files,
    logs,
    metrics,
    publishing,
    results,
    sites,
    sync,
    terminals,
)
from orchestrator_client.names import Names
from orchestrator_client.portal import Portal
from orchestrator_client.requests import result_of
from orchestrator_contract import version
from orchestrator_contract.certificates import SiteCertificate
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import StatResult
from orchestrator_contract.results import DriftReport, SiteHealth, SiteResult


def test_every_contract_error_code_has_its_own_class_under_one_base() -> None:
    classes = {
        cls.code: cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.OrchestratorError)
        and not issubclass(cls, errors.ClientError)
    }
    assert set(classes) - {"unknown"} == set(ErrorCode)
    for code in ErrorCode:
        raised = errors.error_for(code, "why")
        assert type(raised) is classes[code] and raised.code == code and raised.message == "why"
        assert "".join(part.title() for part in code.split("_")).lower() == type(raised).__name__.lower()
        assert type(raised).__name__ in errors.__all__
    newer = errors.error_for("quota_of_the_future", "a newer orchestrator's code")
    assert type(newer) is errors.OrchestratorError and newer.code == "quota_of_the_future"
    assert issubclass(errors.PublishRefused, errors.ClientError) and errors.PublishRefused.code not in set(ErrorCode)


def test_a_reply_is_its_operations_model_or_its_typed_error() -> None:
    entry = {"name": "a", "path": "a", "type": "file", "size": 1, "mode": 420, "mtime": "2026-01-01T00:00:00Z"}
    stat = result_of({"ok": True, "result": {"entry": entry, "etag": "e1"}}, StatResult)
    assert stat.etag == "e1" and stat.entry.size == 1
    with pytest.raises(errors.UnsafePath, match="outside"):
        result_of({"ok": False, "error": {"code": "unsafe_path", "message": "outside the site"}}, StatResult)


@pytest.mark.parametrize(
    ("header", "readable"),
    [(None, True), (version.VERSION, True), (f"{version.MAJOR}.99.0", True), (f"{version.MAJOR}".encode(), True),
     (f"{version.MAJOR + 1}.0.0", False), ("0.9.0", False), ("garbage", False), (17, False)],
)  # fmt: skip
def test_messages_of_the_same_major_version_or_without_one_are_read(header: object, readable: bool) -> None:
    assert version.compatible(header) is readable


@dataclass
class Incoming:
    routing_key: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)


def test_results_are_read_by_routing_key_and_unknown_types_are_skipped() -> None:
    health = SiteHealth(site_id=7, status="down", since="2026-01-01T00:00:00Z", detail="no task answers")
    assert isinstance(results.parse(Incoming("site.health", health.model_dump_json().encode())), SiteHealth)
    drift = DriftReport(drift=[])
    assert isinstance(results.parse(Incoming("orchestrator.drift", drift.model_dump_json().encode())), DriftReport)
    deployed = SiteResult(type="site.deployed", causation_id=None, site_id=7, version=1)
    assert isinstance(results.parse(Incoming("site.deployed", deployed.model_dump_json().encode())), SiteResult)
    assert results.parse(Incoming("site.of_the_future", b"{}")) is None
    examples = metrics_examples()  # the contract's own examples, by routing key
    for key in ("site.metrics", "node.metrics", "orchestrator.metrics"):
        parsed = results.parse(Incoming(key, examples[key].model_dump_json().encode()))
        assert type(parsed) is type(examples[key]) and parsed == examples[key]
    certificate = SiteCertificate(site_id=7, domain="a.example.com", status="issued", not_after="2027-01-01T00:00:00Z")
    assert results.parse(Incoming("site.certificate", certificate.model_dump_json().encode())) == certificate
    newer = Incoming("site.deployed", deployed.model_dump_json().encode(), {version.HEADER: f"{version.MAJOR + 1}.0.0"})
    with pytest.raises(errors.ContractMismatch):
        results.parse(newer)


# The async facades and their blocking twins: the same public methods with the same parameters.
TWINS = [
    (sites.Sites, sync.SyncSites),
    (results.Results, sync.SyncResults),
    (results.Subscription, sync.SyncSubscription),
    (results.Delivery, sync.SyncDelivery),
    (files.Files, sync.SyncFiles),
    (logs.Logs, sync.SyncLogs),
    (logs.LogFollow, sync.SyncLogFollow),
    (terminals.Terminals, sync.SyncTerminals),
    (terminals.Terminal, sync.SyncTerminal),
    (metrics.Metrics, sync.SyncMetrics),
    (databases.Databases, sync.SyncDatabases),
]


@pytest.mark.parametrize(("asynchronous", "blocking"), TWINS, ids=[a.__name__ for a, _ in TWINS])
def test_the_sync_api_has_every_method_of_the_async_one(asynchronous: type, blocking: type) -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, callable)
            if not name.startswith("_") and name not in ("model_validate",)
        }

    theirs, ours = public(asynchronous), public(blocking)
    assert set(theirs) == set(ours)
    for name, signature in theirs.items():
        assert list(signature.parameters) == list(ours[name].parameters), name


FACADES = {
    "sites": sites.Sites,
    "results": results.Results,
    "files": files.Files,
    "logs": logs.Logs,
    "terminals": terminals.Terminals,
    "metrics": metrics.Metrics,
    "databases": databases.Databases,
}
README = Path(__file__).parents[2] / "clients" / "python" / "README.md"


def test_the_readme_names_every_method_of_every_attribute_of_the_client() -> None:
    rows = dict(re.findall(r"^\| `client\.(\w+)` \| (.*) \|$", README.read_text(), re.M))
    made = client.Client(None, names=Names())  # type: ignore[arg-type]  # nothing is opened until used
    attributes = {name for name in vars(made) if not name.startswith("_")} - {"connection", "user"}
    assert set(rows) == set(FACADES) == attributes
    for attribute, facade in FACADES.items():
        assert isinstance(getattr(made, attribute), facade)
        methods = {name for name, _ in inspect.getmembers(facade, callable) if not name.startswith("_")}
        missing = {name for name in methods if f"`{name}" not in rows[attribute]}
        assert not missing, f"client.{attribute}: {missing} not in {README.name}"


def test_the_clients_names_are_the_orchestrators_defaults() -> None:
    settings, names = Settings(), Names()
    assert (names.sites, names.terminals, names.files, names.databases) == (
        settings.inbound_exchange,
        settings.terminal_exchange,
        settings.files_exchange,
        settings.databases_exchange,
    )
    assert (names.results, names.terminal_updates, names.site_results) == (
        settings.results_exchange,
        settings.terminal_events_exchange,
        settings.results_queue,
    )


def test_the_portal_runs_coroutines_in_its_thread_and_passes_back_results_errors_and_items() -> None:
    portal = Portal("test-portal")
    try:

        async def where(value: int) -> tuple[str, int]:
            await asyncio.sleep(0)
            return threading.current_thread().name, value * 2

        assert portal.call(where, 21) == ("test-portal", 42)

        async def fails() -> None:
            raise errors.SiteNotFound("no site 7")

        with pytest.raises(errors.SiteNotFound, match="no site 7"):
            portal.call(fails)

        closed = []

        async def numbers() -> AsyncIterator[int]:
            try:
                for n in range(5):
                    yield n
            finally:
                closed.append(True)

        assert list(portal.iterate(numbers())) == [0, 1, 2, 3, 4] and closed == [True]
        taken = portal.iterate(numbers())
        assert next(taken) == 0
        taken.close()  # a loop left early closes the async generator too
        assert closed == [True, True]

        async def reenter() -> None:
            portal.call(where, 1)

        with pytest.raises(RuntimeError, match="own loop thread"):
            portal.call(reenter)
    finally:
        portal.stop()
    assert not portal.loop.is_running()


def test_a_password_from_a_secret_replaces_the_urls_and_a_heartbeat_is_asked_for() -> None:
    assert connection.target("amqps://director@broker:5671/", "p@ss/w") == (
        "amqps://director:p%40ss%2Fw@broker:5671/?heartbeat=30"
    )
    assert connection.target("amqp://director:director@127.0.0.1/vh?heartbeat=5") == (
        "amqp://director:director@127.0.0.1/vh?heartbeat=5"
    )
    assert [connection.user(u) for u in ("amqp://observer:x@h/", "amqp://h/")] == ["observer", "guest"]
    assert [client.default_prefix(u) for u in ("director", "observer")] == ["director.replies.", "observer."]


def test_a_refused_right_is_told_from_another_closed_channel() -> None:
    text = "ACCESS_REFUSED - access to queue 'orchestrator.site-results' in vhost '/' refused for user 'observer'"
    assert publishing.refused(aiormq.exceptions.ChannelAccessRefused(text))  # what aiormq raises for 403
    assert publishing.refused(ChannelClosed(403, text))
    assert not publishing.refused(ChannelClosed(404, "NOT_FOUND - no queue 'x' in vhost '/'"))
    assert not publishing.refused(aiormq.exceptions.ChannelNotFoundEntity("NOT_FOUND - no queue 'x'"))
    assert not publishing.refused(ConnectionError("gone"))
    assert not publishing.refused(None)


def requirements(dist: str) -> set[str]:
    """`dist` and every distribution it needs, transitively (as installed here; extras ignored)."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


SERVERS_OWN = {"docker", "httpx", "tenacity", "requests", "pydantic-settings", "orchestrator"}


def test_the_client_installs_and_imports_without_the_servers_dependencies() -> None:
    needed = requirements("orchestrator-client")
    assert {"aio-pika", "pydantic", "orchestrator-contract"} <= needed
    assert not needed & SERVERS_OWN, needed & SERVERS_OWN
    probe = "import sys, orchestrator_client, orchestrator_client.sync; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert "orchestrator_client" in loaded
    assert not {name.split(".", 1)[0] for name in loaded} & {"docker", "httpx", "tenacity", "requests", "orchestrator"}
