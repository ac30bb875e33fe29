"""The broker's users and rights as docs/security.md#broker tables them: read from the live broker
(the test vhost, made from deploy/rabbitmq/definitions.json as the stacks load it) and compared
with the table both ways; then every action outside them tried with the real credentials."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from support import Running

from harness.rabbit import LOCAL_BROKER
from harness.stack import ROOT

DOC = ROOT / "docs" / "security.md"
SERVICES = ("collector", "director", "observer", "orchestrator")
ADMIN = "guest"  # the local stack's admin (production: the admin secret's user)
# What each permission grants, by the kind of resource (the doc's vocabulary).
RIGHTS = {
    "exchange": {"configure": "declare/delete", "write": "publish", "read": "bind from"},
    "queue": {"configure": "declare/delete", "write": "bind", "read": "consume"},
}
# Names no row mentions: whoever has a right on them must be documented too. (`amq.*` names are
# the broker's: nobody declares them, so each is probed as the kind it can be.)
PROBES = {
    ("amq.default", "exchange"),
    ("amq.gen-probe", "queue"),
    *((name, kind) for name in ("elsewhere", "director.sites.probe", "orchestrator") for kind in ("exchange", "queue")),
}


@dataclass(frozen=True)
class Row:
    user: str
    resource: str  # a name, or a prefix pattern ending in ".*"
    kinds: frozenset[str]
    rights: frozenset[str]
    keys: dict[str, str]  # "publish"/"bind" -> the topic permission's regex

    def covers(self, name: str, kind: str) -> bool:
        if kind not in self.kinds:
            return False
        if self.resource == "every resource":
            return True
        if self.resource.endswith(".*"):
            return name.startswith(self.resource[:-1]) and len(name) > len(self.resource) - 1
        return name == self.resource


def _cells(line: str) -> list[str]:
    # `\|` inside a cell is a literal bar (in a regex), not a column.
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _table(heading: str) -> list[list[str]]:
    """The rows of the first table whose header row starts with `heading`'s columns."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return rows


def documented_rights() -> list[Row]:
    rows = []
    for user, resource, kinds, rights, keys in _table("| user | resource | kind | rights |"):
        parsed_keys = {}
        for part in filter(None, (p.strip() for p in re.split(r"(?=\b(?:publish|bind) `)", keys))):
            verb, _, regex = part.partition(" ")
            parsed_keys[verb] = regex.strip("`")
        rows.append(
            Row(
                user,
                resource.strip("`"),
                frozenset(k.strip() for k in kinds.split(",")),
                frozenset(r.strip() for r in rights.split(",")),
                parsed_keys,
            )
        )
    return rows


def live_rights(grant: dict[str, str], name: str, kind: str) -> frozenset[str]:
    """What a user's permissions allow on a resource: RabbitMQ matches each regex against the
    name (unanchored, as re:run does)."""
    return frozenset(right for perm, right in RIGHTS[kind].items() if re.search(grant[perm], name))


def test_the_live_permissions_are_the_documented_ones(vhost: str) -> None:
    rows = documented_rights()
    grants = {g["user"]: g for g in LOCAL_BROKER.listing("list_permissions", "-p", vhost)}
    assert set(grants) == {*SERVICES, ADMIN}, "a user with rights on the vhost that the doc does not name"
    assert {row.user for row in rows} == {*SERVICES, "admin"}
    assert (grants[ADMIN]["configure"], grants[ADMIN]["write"], grants[ADMIN]["read"]) == (".*", ".*", ".*")

    # Every name the broker holds, every name the table names, and probes beside each prefix.
    universe = {("amq.default" if e["name"] == "" else e["name"], "exchange")
                for e in LOCAL_BROKER.listing("list_exchanges", "-p", vhost, "name")}  # fmt: skip
    universe |= {(q["name"], "queue") for q in LOCAL_BROKER.listing("list_queues", "-p", vhost, "name")}
    for row in rows:
        if row.resource != "every resource":
            name = row.resource[:-1] + "probe" if row.resource.endswith(".*") else row.resource
            universe |= {(name, kind) for kind in row.kinds}
    universe |= PROBES
    assert len(universe) > 30

    mismatches = []
    for user in SERVICES:
        for name, kind in sorted(universe):
            documented = frozenset().union(*(r.rights for r in rows if r.user == user and r.covers(name, kind)))
            live = live_rights(grants[user], name, kind)
            if live != documented:
                mismatches.append(f"{user} on {kind} {name}: live {sorted(live)}, documented {sorted(documented)}")
    assert not mismatches, "\n".join(mismatches)


def test_the_live_topic_permissions_are_the_documented_routing_keys(vhost: str) -> None:
    live = {(t["user"], t["exchange"]): (t["write"], t["read"])
            for t in LOCAL_BROKER.listing("list_topic_permissions", "-p", vhost)}  # fmt: skip
    documented = {
        (row.user, row.resource): (row.keys.get("publish", "^$"), row.keys.get("bind", "^$"))
        for row in documented_rights()
        if row.keys
    }
    assert live == documented
    assert ("observer", "orchestrator.results") in live and ("director", "director.sites") in live


def test_the_users_tags_and_limits_are_the_documented_ones() -> None:
    users = {u["user"]: u["tags"] for u in LOCAL_BROKER.listing("list_users")}
    for user, _who, tags, limits, *_ in _table("| user | who | tags | limits |"):
        name = ADMIN if user == "admin" else user
        assert users[name] == [t for t in tags.split(",") if t.strip()], user
        if user in SERVICES:
            live = json.loads(LOCAL_BROKER.ctl("list_user_limits", "--user", name) or "{}")
            numbers = dict(re.findall(r"(\d+) (connections|channels)", limits))
            assert live == {f"max-{kind}": int(count) for count, kind in numbers.items()}, user


# --- the same rights, tried ------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def as_director(stack: Running) -> AsyncIterator[AbstractConnection]:
    async with await aio_pika.connect(LOCAL_BROKER.url("director", stack.vhost)) as connection:
        yield connection


@pytest.fixture(scope="module")
async def as_observer(stack: Running) -> AsyncIterator[AbstractConnection]:
    async with await aio_pika.connect(LOCAL_BROKER.url("observer", stack.vhost)) as connection:
        yield connection


Action = Callable[[AbstractChannel], Awaitable[Any]]


async def refused(connection: AbstractConnection, action: Action, code: str = "ACCESS_REFUSED") -> None:
    """`action` on a fresh channel is refused by the broker with `code` (the channel closes)."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        await action(channel)
    except aiormq.exceptions.ChannelClosed as refusal:
        assert code in str(refusal), (action.__name__, refusal)
    else:
        pytest.fail(f"{connection.url.user} may {action.__name__}")


def named(description: str, action: Action) -> Action:
    action.__name__ = description
    return action


def publish(exchange: str, key: str, user_id: str | None) -> Action:
    async def action(channel: AbstractChannel) -> None:
        target = await channel.get_exchange(exchange, ensure=False) if exchange else channel.default_exchange
        await target.publish(aio_pika.Message(b"{}", user_id=user_id), key)

    return named(f"publish to {exchange or 'amq.default'} with key {key} as {user_id}", action)


def consume(queue: str) -> Action:
    async def action(channel: AbstractChannel) -> None:
        # Direct reply-to is consumed without acknowledgements (the broker insists).
        no_ack = queue == "amq.rabbitmq.reply-to"
        await (await channel.get_queue(queue, ensure=False)).consume(_ignore, no_ack=no_ack)

    return named(f"consume {queue}", action)


def own_queue_bound(queue: str, exchange: str, key: str, **arguments: Any) -> Action:
    async def action(channel: AbstractChannel) -> None:
        declared = await channel.declare_queue(queue, exclusive=True, auto_delete=True, arguments=arguments or None)
        await declared.bind(exchange, key)

    return named(f"bind {queue} to {exchange} with {key} ({arguments or 'no arguments'})", action)


def delete_exchange(name: str) -> Action:
    async def action(channel: AbstractChannel) -> None:
        await channel.exchange_delete(name)

    return named(f"delete exchange {name}", action)


def delete_queue(name: str) -> Action:
    async def action(channel: AbstractChannel) -> None:
        await channel.queue_delete(name)

    return named(f"delete queue {name}", action)


def purge(name: str) -> Action:
    async def action(channel: AbstractChannel) -> None:
        await (await channel.get_queue(name, ensure=False)).purge()

    return named(f"purge {name}", action)


def declare_queue(name: str | None) -> Action:
    async def action(channel: AbstractChannel) -> None:
        await channel.declare_queue(name, exclusive=True)

    return named(f"declare queue {name or 'amq.gen-*'}", action)


def declare_exchange(name: str) -> Action:
    async def action(channel: AbstractChannel) -> None:
        await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)

    return named(f"declare exchange {name}", action)


async def _ignore(_: AbstractIncomingMessage) -> None:
    pass


ORCHESTRATORS_QUEUES = (
    "orchestrator.site-events",
    "orchestrator.site-events.retry",
    "orchestrator.site-events.dead",
    "orchestrator.terminal-commands",
    "orchestrator.terminal-commands.dead",
    "orchestrator.file-requests",
    "orchestrator.file-requests.dead",
    "orchestrator.database-requests",
    "orchestrator.database-requests.dead",
)


def _mine(user: str) -> str:
    return f"{'director.replies' if user == 'director' else 'observer'}.rights-{uuid.uuid4().hex[:8]}"


async def test_what_director_and_the_observer_may_do_they_can(
    as_director: AbstractConnection, as_observer: AbstractConnection
) -> None:
    channel = await as_director.channel()
    await consume("orchestrator.site-results")(channel)  # Director's durable results queue
    await consume("amq.rabbitmq.reply-to")(channel)  # direct reply-to
    await own_queue_bound(_mine("director"), "orchestrator.results", "#")(channel)
    await own_queue_bound(_mine("director"), "orchestrator.terminals", f"terminal.{uuid.uuid4()}")(channel)
    await channel.close()
    channel = await as_observer.channel()
    for key in ("site.*", "site.deployed", "site.#", "node.metrics", "orchestrator.metrics"):
        await own_queue_bound(_mine("observer"), "orchestrator.results", key)(channel)
    await channel.close()


async def test_director_is_refused_everything_else(as_director: AbstractConnection, vhost: str) -> None:
    dead_letters_into_results = {"x-dead-letter-exchange": "orchestrator.results"}
    async with await aio_pika.connect(LOCAL_BROKER.url("observer", vhost)) as observer:
        observers_queue = _mine("observer")
        await (await observer.channel()).declare_queue(observers_queue, auto_delete=True)
        attempts: list[Action] = [
            # publish results, terminal output, or into any queue through the default exchange
            publish("orchestrator.results", "site.deployed", "director"),
            publish("orchestrator.terminals", "terminal.x", "director"),
            publish("", "orchestrator.site-events", "director"),
            # publish outside its routing keys
            publish("director.sites", "orchestrator.drift", "director"),
            publish("director.files", "site.created", "director"),
            publish("director.databases", "files.read", "director"),
            # read another user's queue (the observer's), every terminal session at once, its own
            # events, the dead letters
            consume(observers_queue),
            own_queue_bound(_mine("director"), "orchestrator.terminals", "#"),
            own_queue_bound(_mine("director"), "orchestrator.terminals", "terminal.*"),
            own_queue_bound(_mine("director"), "director.sites", "#"),
            own_queue_bound(_mine("director"), "orchestrator.dead-letters", "#"),
            # a queue of its own that would dead-letter into the results
            own_queue_bound(_mine("director"), "orchestrator.results", "#", **dead_letters_into_results),
            # configure (declare, redeclare, delete) what is not its own
            delete_exchange("director.sites"),
            delete_exchange("orchestrator.results"),
            declare_exchange("director.sites"),
            delete_queue("orchestrator.site-results"),
            declare_queue("orchestrator.site-events"),
            declare_queue(None),  # a server-named amq.gen-* queue
            declare_queue(_mine("observer")),
        ]
        # the orchestrator's work queues and dead letters: neither consumed nor purged
        attempts += [consume(queue) for queue in ORCHESTRATORS_QUEUES]
        attempts += [purge(queue) for queue in ORCHESTRATORS_QUEUES]
        for action in attempts:
            await refused(as_director, action)
    # Nor may it pass itself off as another user: the broker checks `user_id`.
    await refused(as_director, publish("director.sites", "site.created", "orchestrator"), "PRECONDITION_FAILED")


async def test_the_observer_only_reads_site_results_and_metrics(
    as_observer: AbstractConnection, as_director: AbstractConnection
) -> None:
    directors_queue = _mine("director")
    holder = await as_director.channel()
    await holder.declare_queue(directors_queue, exclusive=True)
    attempts: list[Action] = [
        consume("orchestrator.site-results"),  # Director's: taking from it would steal its results
        consume(directors_queue),
        own_queue_bound(_mine("observer"), "orchestrator.results", "#"),  # drift is the operators'
        own_queue_bound(_mine("observer"), "orchestrator.results", "orchestrator.drift"),
        own_queue_bound(_mine("observer"), "orchestrator.terminals", "terminal.x"),
        own_queue_bound(_mine("observer"), "director.sites", "#"),
        publish("orchestrator.results", "site.deployed", "observer"),
        publish("director.sites", "site.created", "observer"),
        publish("", "orchestrator.site-events", "observer"),
        declare_queue(_mine("director")),
        declare_queue(None),
        delete_exchange("orchestrator.results"),
        delete_queue("orchestrator.site-results"),
    ]
    attempts += [consume(queue) for queue in ORCHESTRATORS_QUEUES]
    for action in attempts:
        await refused(as_observer, action)
    await holder.close()
