"""The dead-letter queue as operators use it (`orchestrator dead-letters`): read, replay, purge.

Replay republishes each message to its original exchange and routing key with confirms, as the
replay user (the broker stamps `user_id`, which the consumer authenticates), strips the broker's
`x-death` headers, marks it replayed, and only then acks it off the dead-letter queue: a crash in
the middle duplicates at worst, never loses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from yarl import URL

from orchestrator.bus import broker
from orchestrator.bus.decoding import site_id_of
from orchestrator.config import Settings
from orchestrator_contract import headers as hdr


@dataclass(frozen=True)
class DeadLetter:
    id: str
    routing_key: str
    exchange: str
    site_id: int | None
    reason: str
    message: str
    attempts: int
    first_failure: str | None
    last_failure: str | None
    age_seconds: float | None
    publisher: str | None  # the broker user who published it, as far as it is proven
    truncated: int | None = None  # the original size of a body cut to its head (never replayed)

    @classmethod
    def of(cls, message: AbstractIncomingMessage, settings: Settings) -> DeadLetter:
        headers = dict(message.headers or {})
        death = _first_death(headers)
        try:
            site_id = site_id_of(json.loads(message.body))
        except (ValueError, RecursionError):
            site_id = None
        last = _str(headers.get(hdr.LAST_FAILURE)) or _str(death.get("time"))
        return cls(
            id=message.message_id or f"tag-{message.delivery_tag}",
            routing_key=_str(headers.get(hdr.ROUTING_KEY)) or _death_key(death) or message.routing_key or "",
            exchange=_replay_target(_str(headers.get(hdr.EXCHANGE)) or _str(death.get("exchange")), settings),
            site_id=site_id,
            reason=_str(headers.get(hdr.ERROR_CODE)) or _str(death.get("reason")) or "unknown",
            message=_str(headers.get(hdr.ERROR_MESSAGE)) or "",
            attempts=_int(headers.get(hdr.ATTEMPTS) or death.get("count")),
            first_failure=_str(headers.get(hdr.FIRST_FAILURE)) or last,
            last_failure=last,
            age_seconds=_age(last),
            publisher=_publisher(message, headers, death, settings),
            truncated=_int(headers.get(hdr.TRUNCATED)) or None,
        )


Filter = Callable[[DeadLetter], bool]


class Progress(Protocol):
    def step(self, total: int) -> None:
        """One more letter of `total` looked at."""


def make_filter(*, ids: Iterable[str] = (), site: int | None = None, reason: str | None = None) -> Filter:
    wanted = set(ids)

    def keep(letter: DeadLetter) -> bool:
        return (
            (not wanted or letter.id in wanted)
            and (site is None or letter.site_id == site)
            and (reason is None or letter.reason == reason)
        )

    return keep


async def _each(
    channel: AbstractChannel, settings: Settings
) -> AsyncIterator[tuple[AbstractIncomingMessage, DeadLetter]]:
    """Every dead letter in turn, taken unacked (closing the channel puts back what was not acked),
    one at a time: a queue of ten thousand letters is never all in this process's memory."""
    queue = await channel.declare_queue(settings.dead_letter_queue, passive=True)
    for _ in range(queue.declaration_result.message_count or 0):
        message = await queue.get(no_ack=False, fail=False, timeout=10)
        if message is None:
            return
        yield message, DeadLetter.of(message, settings)


async def count(settings: Settings) -> int:
    connection = await broker.connect(settings.broker_url(), settings, patient=False)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.dead_letter_queue, passive=True)
        return int(queue.declaration_result.message_count or 0)


async def stream_letters(settings: Settings, keep: Filter) -> AsyncIterator[DeadLetter]:
    """The chosen letters as they are read (the CLI prints each at once)."""
    connection = await broker.connect(settings.broker_url(), settings, patient=False)
    async with connection:
        channel = await connection.channel()
        async for _, letter in _each(channel, settings):
            if keep(letter):
                yield letter


async def replay(
    settings: Settings,
    keep: Filter,
    *,
    dry_run: bool,
    include_unauthenticated: bool = False,
    progress: Progress | None = None,
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """Replay the chosen letters; return (replayed, skipped).

    Replay republishes as the replay user, whom the consumer trusts. A letter whose original
    publisher is not proven to be an allowed one (refused as unauthenticated, or dead-lettered by
    the broker without proof) would be laundered that way, so it is skipped unless asked for.
    """
    source = await broker.connect(settings.broker_url(), settings, patient=False)
    target = await broker.connect(settings.replay_broker_url(), settings, patient=False)
    replay_user = URL(settings.replay_broker_url()).user or "guest"
    replayed: list[DeadLetter] = []
    async with source, target:
        channel = await source.channel()
        publisher = await target.channel(publisher_confirms=True, on_return_raises=True)
        trusted = set(settings.allowed_publishers)
        skipped: list[DeadLetter] = []
        total = await count(settings)
        async for message, letter in _each(channel, settings):
            if progress is not None:
                progress.step(total)
            if not keep(letter):
                continue
            # A terminal command replayed later would open or feed a terminal nobody watches, a file
            # request would answer a requester that stopped waiting long ago, a truncated body is
            # not the event any more.
            if (
                (letter.publisher not in trusted and not include_unauthenticated)
                or letter.exchange in (settings.terminal_exchange, settings.files_exchange)
                or letter.truncated is not None
            ):
                skipped.append(letter)
                continue
            if not dry_run:
                exchange = await publisher.get_exchange(letter.exchange, ensure=False)
                await broker.publish(
                    exchange,
                    letter.routing_key,
                    message.body,
                    timeout=settings.publish_timeout_seconds,
                    headers=_replay_headers(message),
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    user_id=replay_user,
                    content_type=message.content_type,
                )
                await message.ack()  # only after the broker confirmed the copy
            replayed.append(letter)
    return replayed, skipped


async def purge(settings: Settings) -> int:
    connection = await broker.connect(settings.broker_url(), settings, patient=False)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.dead_letter_queue, passive=True)
        result = await queue.purge()
        return int(result.message_count or 0)


def _replay_target(exchange: str | None, settings: Settings) -> str:
    """Replay publishes only to an exchange Director publishes to, whatever a header says."""
    directors = (settings.inbound_exchange, settings.terminal_exchange, settings.files_exchange)
    return exchange if exchange in directors else settings.inbound_exchange


def _replay_headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers = {
        k: v for k, v in (message.headers or {}).items() if k not in (*hdr.BROKER_DEATH, *hdr.FAILURE, *hdr.ORIGIN)
    }
    headers[hdr.REPLAYED] = _int(headers.get(hdr.REPLAYED)) + 1
    return headers


def _publisher(
    message: AbstractIncomingMessage, headers: dict[str, Any], death: dict[str, Any], settings: Settings
) -> str | None:
    """Who published the letter, trusting only what the broker or the orchestrator vouches for.

    Our own dead-letter copies carry `x-orchestrator-publisher` only after authenticating (a forged
    one is dropped). A letter the broker dead-lettered keeps the original `user_id`, which the
    broker checked when it came in through the inbound exchange; through the requeue exchange it
    carries our header from its first delivery.
    """
    if not death:
        return _str(headers.get(hdr.PUBLISHER))
    origin = _str(death.get("exchange"))
    if origin == settings.inbound_exchange:
        return message.user_id
    if origin == settings.requeue_exchange:
        return _str(headers.get(hdr.PUBLISHER))
    return None


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def _death_key(death: dict[str, Any]) -> str | None:
    keys = death.get("routing-keys")
    return _str(keys[0]) if isinstance(keys, list) and keys else None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _age(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round((datetime.now(UTC) - moment).total_seconds(), 1)
