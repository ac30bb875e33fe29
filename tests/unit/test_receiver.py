"""The one receive → authenticate → parse → process → settle path every queue uses, on fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import Completed, Failed, Outcome, Received
from orchestrator.bus.receiver import PARSE_ON_LOOP_BYTES, Lanes, Receiver, Trust
from orchestrator.errors import InvalidEvent, OrchestratorError, Unauthenticated

EXCHANGE = "director.things"


@dataclass
class Message:
    """The parts of an aio-pika delivery the receiver reads."""

    body: bytes
    user_id: str | None = "director"
    exchange: str = EXCHANGE
    routing_key: str = "thing.do"
    message_id: str | None = "m1"
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeSettler:
    settled: list[Outcome] = field(default_factory=list)

    async def settle(self, delivery: Any, outcome: Outcome) -> None:
        self.settled.append(outcome)


@dataclass
class Things:
    """A processor of `{"lane": .., "fail": ..}` JSON-ish bodies: b"lane:action"."""

    active: dict[Hashable, int] = field(default_factory=dict)
    most_at_once: int = 0
    parsed_on: list[str] = field(default_factory=list)

    def parse(self, envelope: Envelope) -> tuple[str, str]:
        import threading

        self.parsed_on.append(threading.current_thread().name)
        lane, _, action = envelope.body.decode().partition(":")
        if not action:
            raise InvalidEvent("no action")
        return lane, action

    def lane(self, message: tuple[str, str] | None, error: OrchestratorError | None) -> Hashable | None:
        return message[0] if message else None

    async def process(self, message: tuple[str, str], received: Received) -> Outcome:
        lane, action = message
        self.active[lane] = self.active.get(lane, 0) + 1
        self.most_at_once = max(self.most_at_once, self.active[lane])
        try:
            await asyncio.sleep(0.01)
            if action == "boom":
                raise RuntimeError("a bug")
            if action == "refuse":
                raise OrchestratorError("refused")
            return Completed(facts={"publisher": received.publisher})
        finally:
            self.active[lane] -= 1

    def refused(self, error: OrchestratorError, envelope: Envelope, publisher: str | None, message: Any) -> Failed:
        return Failed(error, None, publisher, {"message": message})


def receiver() -> tuple[Receiver[tuple[str, str]], Things, FakeSettler]:
    things, settler = Things(), FakeSettler()
    return Receiver(things, settler, Trust(EXCHANGE, ["director"])), things, settler  # type: ignore[arg-type]


async def test_a_message_from_a_trusted_publisher_is_processed_and_settled() -> None:
    receive, _, settler = receiver()
    await receive(Message(b"a:do"))  # type: ignore[arg-type]
    assert settler.settled == [Completed(facts={"publisher": "director"})]


@pytest.mark.parametrize("message", [Message(b"a:do", user_id=None), Message(b"a:do", user_id="mallory"),
                                     Message(b"a:do", exchange="amq.topic")])  # fmt: skip
async def test_a_stranger_is_refused_before_parsing_and_never_named_a_publisher(message: Message) -> None:
    receive, things, settler = receiver()
    await receive(message)  # type: ignore[arg-type]
    (outcome,) = settler.settled
    assert isinstance(outcome, Failed) and isinstance(outcome.error, Unauthenticated)
    assert outcome.publisher is None and things.parsed_on == []


async def test_bad_bytes_and_bugs_become_the_processors_typed_refusal() -> None:
    receive, _, settler = receiver()
    await receive(Message(b"no-action"))  # type: ignore[arg-type]
    await receive(Message(b"a:boom"))  # type: ignore[arg-type]
    await receive(Message(b"a:refuse"))  # type: ignore[arg-type]
    invalid, bug, refused = settler.settled
    assert isinstance(invalid, Failed) and isinstance(invalid.error, InvalidEvent)
    assert invalid.publisher == "director" and invalid.facts == {"message": None}
    assert isinstance(bug, Failed) and "unexpected error" in bug.error.message
    assert bug.facts == {"message": ("a", "boom")}
    assert isinstance(refused, Failed) and refused.error.message == "refused"


async def test_one_lane_runs_one_message_at_a_time_and_lanes_run_side_by_side() -> None:
    receive, things, settler = receiver()
    await asyncio.gather(*(receive(Message(f"{lane}:do".encode())) for lane in "aaabbb"))  # type: ignore[arg-type]
    assert things.most_at_once == 1 and len(settler.settled) == 6
    assert len(receive._lanes) == 0  # nothing kept once the lanes are idle


async def test_a_large_body_is_parsed_off_the_event_loop() -> None:
    receive, things, _ = receiver()
    await receive(Message(b"a:" + b"x" * PARSE_ON_LOOP_BYTES))  # type: ignore[arg-type]
    await receive(Message(b"a:small"))  # type: ignore[arg-type]
    assert things.parsed_on[0] != things.parsed_on[1] == "MainThread"


async def test_lanes_forget_a_key_once_nobody_holds_or_waits_for_it() -> None:
    lanes = Lanes()
    async with lanes.hold(1), lanes.hold(2):
        assert len(lanes) == 2
    assert len(lanes) == 0
