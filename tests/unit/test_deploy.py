"""The deployment files read as the code expects: least privilege on the broker, asserted from
deploy/rabbitmq/definitions.json (the one source for the local stack, compose.yaml and tests), and
a Traefik configuration that matches the orchestrator's defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.config import Settings
from orchestrator.traefik.labels import RETRY_ATTEMPTS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Names of the objects each side uses (orchestrator.* is every queue and exchange of ours).
OURS = [
    "orchestrator.site-events",
    "orchestrator.results",
    "orchestrator.requeue",
    "orchestrator.terminals",
    "orchestrator.file-requests",
]
DIRECTORS = ["director.sites", "director.terminals", "director.files"]
# RabbitMQ's name of the default exchange in permission checks (replies go there).
DEFAULT_EXCHANGE = "amq.default"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
REPLY_QUEUES = ["director.replies.abc", "director.replies.web-7f3a.session-1"]


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())  # type: ignore[no-any-return]


def grant(definitions: dict[str, Any], user: str) -> dict[str, str]:
    (found,) = [p for p in definitions["permissions"] if p["user"] == user and p["vhost"] == "/"]
    return found  # type: ignore[no-any-return]


def allows(pattern: str, name: str) -> bool:
    # RabbitMQ matches permission regexes with re:run, i.e. a search, anchored only by ^ and $.
    return re.search(pattern, name) is not None


def test_four_users_without_passwords_and_no_guest(definitions: dict[str, Any]) -> None:
    users = {u["name"]: u for u in definitions["users"]}
    assert sorted(users) == ["collector", "director", "observer", "orchestrator"]
    assert all(u["password_hash"] == "" and u["tags"] == [] for u in users.values())
    assert {p["user"] for p in definitions["permissions"]} == {"collector", "director", "observer", "orchestrator"}


def test_a_collector_may_only_send_samples(definitions: dict[str, Any]) -> None:
    """A site node's collector: samples to the collectors' exchange, nothing else (a node taken
    over cannot publish a `site.deployed`, read an event or declare anything)."""
    settings = Settings()
    collector = grant(definitions, "collector")
    assert allows(collector["write"], settings.collector_exchange)
    for name in [*OURS, *DIRECTORS, DEFAULT_EXCHANGE, f"{settings.collector_exchange}.evil"]:
        assert not allows(collector["write"], name)
    for name in [*OURS, *DIRECTORS, settings.collector_exchange, f"{settings.collector_exchange}.x"]:
        assert not allows(collector["read"], name) and not allows(collector["configure"], name)
    (topic,) = [t for t in definitions["topic_permissions"] if t["user"] == "collector"]
    assert topic["exchange"] == settings.collector_exchange
    assert allows(topic["write"], "sample") and not allows(topic["write"], "site.deployed")
    assert "collector" in settings.collector_publishers and "collector" not in settings.allowed_publishers


# What Director reads of ours: its durable results queue, and the results and terminal-session
# exchanges its own queues are bound to.
DIRECTOR_READS = ["orchestrator.site-results", "orchestrator.results", "orchestrator.terminals"]


def test_director_touches_only_its_own_exchanges(definitions: dict[str, Any]) -> None:
    director = grant(definitions, "director")
    for name in [*OURS, "orchestrator.site-events.dead", "orchestrator.dead-letters", "orchestrator.terminal-commands"]:
        assert not allows(director["configure"], name)
        assert not allows(director["write"], name)
        assert allows(director["read"], name) == (name in DIRECTOR_READS), name
    for name in DIRECTORS:
        assert allows(director["write"], name)
        assert not allows(director["read"], name)
        # Director may not delete or redeclare them (that would silently drop events).
        assert not allows(director["configure"], name)
    assert not allows(director["write"], "")  # the default exchange
    assert not allows(director["write"], DEFAULT_EXCHANGE)
    assert not allows(director["write"], "director.sites.evil")


def test_director_declares_binds_and_reads_its_reply_queues_and_nothing_else(definitions: dict[str, Any]) -> None:
    director = grant(definitions, "director")
    for name in REPLY_QUEUES:
        assert allows(director["configure"], name)
        assert allows(director["read"], name)
        assert allows(director["write"], name)  # queue.bind needs write on the queue
    assert allows(director["read"], DIRECT_REPLY_TO)  # consuming RabbitMQ's direct reply-to
    for name in ["director.replies.", "director.repliesx", "orchestrator.file-requests", "amq.gen-abc", "observer.x"]:
        assert not allows(director["configure"], name)
        assert not allows(director["read"], name)
        assert not allows(director["write"], name)


def test_the_observer_reads_results_through_its_own_queues_only(definitions: dict[str, Any]) -> None:
    observer = grant(definitions, "observer")
    for name in ["observer.billing", "observer.audit.deploys"]:
        assert (
            allows(observer["configure"], name) and allows(observer["write"], name) and allows(observer["read"], name)
        )
    assert allows(observer["read"], "orchestrator.results")
    for name in [*OURS[:1], *OURS[2:], *DIRECTORS, *REPLY_QUEUES, DIRECT_REPLY_TO, DEFAULT_EXCHANGE,
                 "orchestrator.site-results", "observer.", "amq.gen-abc"]:  # fmt: skip
        assert not allows(observer["read"], name), name
        assert not allows(observer["write"], name), name
        assert not allows(observer["configure"], name), name
    assert not allows(observer["write"], "orchestrator.results")


def test_topic_permissions_keep_each_user_to_its_routing_keys(definitions: dict[str, Any]) -> None:
    topics = {(t["user"], t["exchange"]): t for t in definitions["topic_permissions"]}
    assert all(t["vhost"] == "/" for t in topics.values())
    sites, terminals = topics["director", "director.sites"], topics["director", "orchestrator.terminals"]
    assert all(allows(sites["write"], key) for key in ("site.created", "site.restart_requested"))
    assert not any(allows(sites["write"], key) for key in ("orchestrator.drift", "site.a.b", "terminal.open"))
    # One session's output, never every session's at once.
    assert allows(terminals["read"], "terminal.5f0e8a3c-0b7e-4c1e-9d4e-1f2a3b4c5d6e")
    assert not any(allows(terminals["read"], key) for key in ("#", "terminal.#", "terminal.*", "*.*", "terminal.a"))
    observer = topics["observer", "orchestrator.results"]
    assert all(allows(observer["read"], key) for key in ("site.deployed", "site.*", "site.#", "site.health"))
    assert not any(allows(observer["read"], key) for key in ("#", "orchestrator.drift", "*.*", "site"))


def test_orchestrator_reads_directors_exchanges_but_never_writes_them(definitions: dict[str, Any]) -> None:
    orchestrator = grant(definitions, "orchestrator")
    for name in OURS:
        assert allows(orchestrator["configure"], name)
        assert allows(orchestrator["write"], name)
        assert allows(orchestrator["read"], name)
    for name in DIRECTORS:
        # Looked up passively (no right needed): never declared, changed or deleted by us.
        assert not allows(orchestrator["configure"], name)
        assert allows(orchestrator["read"], name)
        assert not allows(orchestrator["write"], name)
    assert not allows(orchestrator["write"], "")


def test_the_orchestrator_writes_the_default_exchange_for_replies_only_and_reads_no_reply_queue(
    definitions: dict[str, Any],
) -> None:
    # The broker cannot restrict the routing key on the default exchange: bus.replies admits only
    # reply queues as reply_to (tests/unit/test_files_bus.py).
    orchestrator = grant(definitions, "orchestrator")
    assert allows(orchestrator["write"], DEFAULT_EXCHANGE)
    for name in [*REPLY_QUEUES, DIRECT_REPLY_TO]:
        assert not allows(orchestrator["configure"], name)
        assert not allows(orchestrator["read"], name)


def test_directors_exchanges_are_declared_as_the_orchestrator_declares_them(definitions: dict[str, Any]) -> None:
    settings = Settings()
    exchanges = {(e["vhost"], e["name"]): e for e in definitions["exchanges"]}
    assert sorted(exchanges) == sorted(
        [
            ("/", settings.inbound_exchange),
            ("/", settings.terminal_exchange),
            ("/", settings.files_exchange),
            ("/", settings.databases_exchange),
        ]
    )
    # Any other property and the orchestrator's declaration fails with PRECONDITION_FAILED.
    declared = {"type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {}}
    for exchange in exchanges.values():
        assert {key: exchange[key] for key in declared} == declared


def test_traefik_serves_what_the_orchestrator_expects() -> None:
    static = (DEPLOY / "traefik" / "traefik.yml").read_text()
    settings = Settings()
    assert f"\n    network: {settings.network} # local:" in static
    assert f'\n  {settings.traefik_entrypoint}:\n    address: ":80"' in static
    api_port = urlsplit(settings.traefik_api_url).port
    assert f'\n  traefik:\n    address: ":{api_port}"' in static
    assert not re.search(r"^\s*insecure:", static, re.MULTILINE)  # only dynamic.yml's router serves the API
    assert "service: api@internal" in (DEPLOY / "traefik" / "dynamic.yml").read_text()


def test_a_stopping_task_serves_until_traefik_has_dropped_it() -> None:
    """With a throttle no longer than its refresh, Traefik applies a stopped task's removal within one
    refresh and one poll (the poll: up to ~3 s on a large fleet); the drain outlasts both."""
    static = (DEPLOY / "traefik" / "traefik.yml").read_text()
    (throttle,) = re.findall(r"^  providersThrottleDuration: (\d+)s$", static, re.MULTILINE)
    (production, local) = re.findall(
        r"^    refreshSeconds: (\d+) # local: \$TRAEFIK_REFRESH_SECONDS \((\d+)\)$", static, re.MULTILINE
    )[0]
    assert int(throttle) <= int(local) <= int(production)
    assert Settings().drain_seconds >= int(production) + 3


def test_a_request_to_a_vanished_task_is_retried_elsewhere_within_seconds() -> None:
    """A dial that nothing answers (a task gone before Traefik dropped it) fails fast enough that
    every attempt of the sites' retry middleware fits in a client's patience."""
    static = (DEPLOY / "traefik" / "traefik.yml").read_text()
    (dial,) = re.findall(r"^    dialTimeout: (\d+)s$", static, re.MULTILINE)
    assert 0 < int(dial) * RETRY_ATTEMPTS <= 5


def test_every_queue_of_ours_is_bounded_by_a_policy(definitions: dict[str, Any]) -> None:
    settings = Settings()
    bounded = [settings.work_queue, settings.retry_queue, settings.dead_letter_queue, settings.terminal_queue,
               settings.results_queue]  # fmt: skip
    policies = definitions["policies"]
    for queue in bounded:
        (policy,) = [p for p in policies if re.search(p["pattern"], queue)]
        assert policy["apply-to"] == "queues" and policy["definition"]["max-length"] > 0
        assert policy["definition"]["overflow"] == (
            "drop-head" if queue == settings.dead_letter_queue else "reject-publish"
        )
    assert settings.files_queue_max_length > 0  # the file queue carries its bound as an argument
