from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.bus.decoding import MAX_BODY, parse_event, readable_parts, site_id_of
from orchestrator.bus.envelope import Envelope, authenticate, believed_headers
from orchestrator.config import Settings
from orchestrator.errors import InvalidEvent, Unauthenticated
from orchestrator_contract.headers import ATTEMPTS, EXCHANGE, PUBLISHER, ROUTING_KEY
from orchestrator_contract.sites import SiteCreated, SiteDeleted, SiteUpdated

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
# The documented defaults, read without the environment.
INBOUND = Settings.model_fields["inbound_exchange"].default
REQUEUE = Settings.model_fields["requeue_exchange"].default
WORK_QUEUE = Settings.model_fields["work_queue"].default
SECRET = "hunter2-s3cr3t-value"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def auth(envelope: Envelope, allowed: list[str] | None = None) -> str:
    return authenticate(
        envelope,
        inbound_exchange=INBOUND,
        requeue_exchange=REQUEUE,
        allowed=["director"] if allowed is None else allowed,
    )


# --- parse_event --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "model"), [("site.created", SiteCreated), ("site.updated", SiteUpdated), ("site.deleted", SiteDeleted)]
)
def test_parses_each_inbound_event(name: str, model: type) -> None:
    event = parse_event(body(example(name)), name)
    assert isinstance(event, model)


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"\xff\xfe\x00garbage", b"{'single': 'quotes'}"])
def test_not_json_is_an_invalid_event(raw: bytes) -> None:
    with pytest.raises(InvalidEvent, match="not JSON") as info:
        parse_event(raw, "site.created")
    assert info.value.site_id is None
    assert info.value.code == "invalid_event"
    assert info.value.retryable is False


def test_wrong_schema_is_an_invalid_event_with_the_site_id() -> None:
    data = example("site.created")
    data["site"]["id"] = 77
    data["site"]["domains"] = ["not a host name"]
    with pytest.raises(InvalidEvent, match="schema") as info:
        parse_event(body(data), "site.created")
    assert info.value.site_id == 77
    assert "site.domains.0" in info.value.message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), "2"),
        (("site", "id"), "1"),
        (("site", "resources", "cpus"), "1"),
        (("site", "serving"), "true"),
        (("site", "serving"), 1),
        (("site", "image", "custom"), "false"),
    ],
)
def test_json_types_are_strict(path: tuple[str, ...], value: object) -> None:
    data = example("site.created")
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InvalidEvent, match="schema"):
        parse_event(body(data), "site.created")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_cpus_are_invalid(literal: bytes) -> None:
    raw = body(example("site.created")).replace(b'"cpus": 0.5', b'"cpus": ' + literal)
    assert literal in raw
    with pytest.raises(InvalidEvent):
        parse_event(raw, "site.created")


def test_integral_float_cpus_are_accepted() -> None:
    data = example("site.created")
    data["site"]["resources"]["cpus"] = 2
    event = parse_event(body(data), "site.created")
    assert isinstance(event, SiteCreated)
    assert event.site.resources.cpus == 2.0


def test_wrong_schema_without_a_readable_site_id() -> None:
    data = example("site.created")
    data["site"]["id"] = "seven"
    with pytest.raises(InvalidEvent) as info:
        parse_event(body(data), "site.created")
    assert info.value.site_id is None


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "text",
        42,
        None,
        {},
        {"site": 7},
        {"site": {"id": True}},
        {"site": {"id": 0}},
        {"site": {"id": 2**31}},
        {"site": {"id": 1.0}},
    ],
)
def test_site_id_of_unreadable_ids(raw: object) -> None:
    assert site_id_of(raw) is None


def test_site_id_of_a_readable_id() -> None:
    assert site_id_of({"site": {"id": 2**31 - 1}}) == 2**31 - 1


def test_type_differing_from_the_routing_key_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="routing key") as info:
        parse_event(body(example("site.created")), "site.deleted")
    assert info.value.site_id == 1


@pytest.mark.parametrize("raw", [[1, 2], "site.created", 3])
def test_body_that_is_not_an_object_is_invalid(raw: object) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(body(raw), "site.created")


@pytest.mark.parametrize("routing_key", ["site.renamed", "", "site.*", "site.deployed", "#"])
def test_unknown_routing_key_is_invalid(routing_key: str) -> None:
    data = {**example("site.created"), "type": routing_key}
    with pytest.raises(InvalidEvent, match="unknown routing key") as info:
        parse_event(body(data), routing_key)
    assert info.value.site_id == 1


def test_oversized_body_is_invalid() -> None:
    data = example("site.created")
    data["padding"] = "x" * MAX_BODY
    raw = body(data)
    assert len(raw) > MAX_BODY
    with pytest.raises(InvalidEvent, match="larger than"):
        parse_event(raw, "site.created")


def test_body_at_the_limit_is_parsed() -> None:
    data = example("site.created")
    data["padding"] = ""
    size = len(body(data))
    data["padding"] = "x" * (MAX_BODY - size)
    raw = body(data)
    assert len(raw) == MAX_BODY
    assert isinstance(parse_event(raw, "site.created"), SiteCreated)


@pytest.mark.parametrize(
    "env",
    [
        {"API_TOKEN": SECRET, "1BAD": "x"},
        {"API_TOKEN": SECRET, "PORT": "8080"},
        {"API_TOKEN": SECRET + "\x00"},
        {"A-B": SECRET},
        {"OK": SECRET, "TOO_BIG": SECRET * 2000},
    ],
    ids=["bad-key-elsewhere", "reserved-key-elsewhere", "nul-in-secret", "secret-under-bad-key", "overlong-value"],
)
def test_error_messages_never_echo_env_values(env: dict[str, str]) -> None:
    data = example("site.created")
    data["site"]["env"] = env
    with pytest.raises(InvalidEvent) as info:
        parse_event(body(data), "site.created")
    assert SECRET not in info.value.message
    assert SECRET not in str(info.value)
    assert "hunter2" not in repr(info.value)


def test_error_messages_never_echo_other_bad_inputs() -> None:
    data = example("site.created")
    data["site"]["env"] = {"API_TOKEN": SECRET}
    data["site"]["resources"] = {"cpus": SECRET, "memory": SECRET}
    data["site"]["kind"] = SECRET
    data["site"]["domains"] = [SECRET + ".com`)"]
    with pytest.raises(InvalidEvent) as info:
        parse_event(body(data), "site.created")
    assert SECRET not in info.value.message


def test_error_message_is_bounded() -> None:
    data = example("site.created")
    data["site"]["env"] = {f"{i}BAD": "x" for i in range(400)}
    with pytest.raises(InvalidEvent) as info:
        parse_event(body(data), "site.created")
    assert len(info.value.message) < 1200


# --- authenticate -------------------------------------------------------------------------------


def test_inbound_message_from_an_allowed_user() -> None:
    envelope = Envelope(body=b"{}", exchange=INBOUND, routing_key="site.created", user_id="director")
    assert auth(envelope) == "director"


def test_inbound_message_from_any_of_the_allowed_users() -> None:
    envelope = Envelope(body=b"{}", exchange=INBOUND, routing_key="site.created", user_id="ops")
    assert auth(envelope, ["director", "ops"]) == "ops"


@pytest.mark.parametrize("user_id", [None, ""])
def test_inbound_message_without_user_id_is_unauthenticated(user_id: str | None) -> None:
    envelope = Envelope(body=b"{}", exchange=INBOUND, routing_key="site.created", user_id=user_id)
    with pytest.raises(Unauthenticated, match="user_id") as info:
        auth(envelope)
    assert info.value.code == "unauthenticated"
    assert info.value.retryable is False


@pytest.mark.parametrize("user_id", ["mallory", "Director", "director ", "guest"])
def test_inbound_message_from_another_user_is_unauthenticated(user_id: str) -> None:
    envelope = Envelope(body=b"{}", exchange=INBOUND, routing_key="site.created", user_id=user_id)
    with pytest.raises(Unauthenticated):
        auth(envelope)


def test_no_user_is_allowed_when_the_list_is_empty() -> None:
    envelope = Envelope(body=b"{}", exchange=INBOUND, routing_key="site.created", user_id="director")
    with pytest.raises(Unauthenticated):
        auth(envelope, [])


def test_the_publisher_header_is_ignored_on_the_inbound_exchange() -> None:
    envelope = Envelope(
        body=b"{}", exchange=INBOUND, routing_key="site.created", user_id=None, headers={PUBLISHER: "director"}
    )
    with pytest.raises(Unauthenticated):
        auth(envelope)


def test_exchange_names_are_the_defaults() -> None:
    assert INBOUND == "director.sites"
    assert REQUEUE == "orchestrator.requeue"


def test_retried_message_uses_the_publisher_header() -> None:
    envelope = Envelope(
        body=b"{}",
        exchange=REQUEUE,
        routing_key="site.created",
        user_id="orchestrator",
        headers={PUBLISHER: "director"},
    )
    assert auth(envelope) == "director"


def test_retried_message_ignores_user_id() -> None:
    envelope = Envelope(body=b"{}", exchange=REQUEUE, routing_key="site.created", user_id="director", headers={})
    with pytest.raises(Unauthenticated):
        auth(envelope)


@pytest.mark.parametrize("publisher", [None, "", "mallory"])
def test_retried_message_with_a_bad_publisher_header_is_unauthenticated(publisher: str | None) -> None:
    headers = {} if publisher is None else {PUBLISHER: publisher}
    envelope = Envelope(body=b"{}", exchange=REQUEUE, routing_key="site.created", headers=headers)
    with pytest.raises(Unauthenticated):
        auth(envelope)


def test_default_exchange_is_unauthenticated_even_to_the_work_queue() -> None:
    # Any client may publish to a queue through the default exchange, headers included.
    envelope = Envelope(body=b"{}", exchange="", routing_key=WORK_QUEUE, headers={PUBLISHER: "director"})
    with pytest.raises(Unauthenticated, match="exchange"):
        auth(envelope)


@pytest.mark.parametrize(
    "exchange",
    [
        "",
        "amq.topic",
        "amq.direct",
        "orchestrator.retry",
        "orchestrator.dead-letters",
        "orchestrator.results",
        "director",
    ],
)
def test_other_exchanges_are_unauthenticated(exchange: str) -> None:
    envelope = Envelope(
        body=b"{}", exchange=exchange, routing_key=WORK_QUEUE, user_id="director", headers={PUBLISHER: "director"}
    )
    with pytest.raises(Unauthenticated, match="exchange"):
        auth(envelope)


# --- envelope headers ---------------------------------------------------------------------------


def test_attempts_default_to_zero() -> None:
    assert Envelope(body=b"", exchange=INBOUND, routing_key="site.created").attempts == 0


@pytest.mark.parametrize(("value", "expected"), [(3, 3), ("4", 4), (None, 0), ("many", 0), ([1], 0)])
def test_attempts_come_from_the_header(value: object, expected: int) -> None:
    envelope = Envelope(body=b"", exchange=REQUEUE, routing_key="site.created", headers={ATTEMPTS: value})
    assert envelope.attempts == expected


def test_original_routing_key_comes_from_the_header() -> None:
    envelope = Envelope(body=b"", exchange=REQUEUE, routing_key="site.created", headers={ROUTING_KEY: "site.updated"})
    assert envelope.original_routing_key == "site.updated"


def test_original_routing_key_defaults_to_the_routing_key() -> None:
    envelope = Envelope(body=b"", exchange=INBOUND, routing_key="site.created")
    assert envelope.original_routing_key == "site.created"


def test_deeply_nested_json_is_an_invalid_event_not_a_crash() -> None:
    with pytest.raises(InvalidEvent):
        parse_event(b"[" * 100_000, "site.created")


def test_an_invalid_event_carries_its_readable_id_site_and_version() -> None:
    event_id = "6f1c1e8e-2f0d-4c1a-9f5e-0000000000aa"
    body = json.dumps({"event_id": event_id, "type": "site.created", "version": 7, "site": {"id": 3}}).encode()
    with pytest.raises(InvalidEvent) as caught:
        parse_event(body, "site.created")
    assert str(caught.value.event_id) == event_id
    assert caught.value.site_id == 3 and caught.value.version == 7


@pytest.mark.parametrize(
    "raw",
    [{"event_id": "not-a-uuid", "version": "7"}, {"event_id": 5, "version": True}, {"version": 0}, [1], None],
)
def test_malformed_parts_of_an_invalid_event_are_not_reported(raw: object) -> None:
    parts = readable_parts(raw)
    assert parts.get("event_id") is None and parts.get("version") is None


# --- hostile inputs (security review, second round) ---------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(-5, 0), (-(2**40), 0), (10**12, 1000)])
def test_attempts_are_clamped(value: int, expected: int) -> None:
    # A negative count would make failures retry forever.
    envelope = Envelope(body=b"", exchange=REQUEUE, routing_key="site.created", headers={ATTEMPTS: value})
    assert envelope.attempts == expected


@pytest.mark.parametrize("exchange", [INBOUND, "", "amq.topic"])
def test_our_headers_are_not_believed_off_the_requeue_exchange(exchange: str) -> None:
    sent = {
        ROUTING_KEY: "site.deleted",
        ATTEMPTS: -1,
        EXCHANGE: "evil",
        PUBLISHER: "director",
        "X-Orchestrator-Attempts": 9,
    }
    kept = believed_headers({**sent, "traceparent": "00-abc"}, exchange, REQUEUE)
    assert kept == {"traceparent": "00-abc"}
    envelope = Envelope(body=b"", exchange=exchange, routing_key="site.created", headers=kept)
    assert envelope.original_routing_key == "site.created"
    assert envelope.attempts == 0


def test_our_headers_are_believed_on_the_requeue_exchange() -> None:
    sent = {ROUTING_KEY: "site.deleted", ATTEMPTS: 2, PUBLISHER: "director"}
    assert believed_headers(sent, REQUEUE, REQUEUE) == sent


def test_a_forged_routing_key_header_does_not_pass_the_type_check() -> None:
    # Director's message says site.deleted in our header but site.created on the wire.
    headers = believed_headers({ROUTING_KEY: "site.deleted"}, INBOUND, REQUEUE)
    envelope = Envelope(body=b"", exchange=INBOUND, routing_key="site.created", headers=headers)
    with pytest.raises(InvalidEvent, match="does not match the routing key"):
        parse_event(body(example("site.deleted")), envelope.original_routing_key)


def test_versions_are_bounded_to_int64() -> None:
    data = example("site.created")
    assert parse_event(body({**data, "version": 2**63 - 1}), "site.created").version == 2**63 - 1
    with pytest.raises(InvalidEvent, match="version") as caught:
        parse_event(body({**data, "version": 10**30}), "site.created")
    assert caught.value.version is None  # not echoed as a version we could act on
    assert caught.value.site_id == data["site"]["id"]


@pytest.mark.parametrize("where", ["version", "site.resources.cpus", "extra"])
def test_a_number_past_pythons_digit_limit_is_an_invalid_event(where: str) -> None:
    data = example("site.created")
    text = json.dumps(data)
    huge = "9" * 5000
    if where == "version":
        text = text.replace(f'"version": {data["version"]}', f'"version": {huge}')
    elif where == "site.resources.cpus":
        text = text.replace('"site": {', f'"site": {{"resources": {{"cpus": {huge}}}, ', 1)
    else:
        text = text[:-1] + f', "extra": {huge}}}'
    with pytest.raises(InvalidEvent):
        parse_event(text.encode(), "site.created")


def test_duplicate_members_are_refused_before_validation() -> None:
    data = example("site.created")
    text = json.dumps(data).replace('"env": {', '"env": {"A": "1", "A": "2", ', 1)
    with pytest.raises(InvalidEvent, match="duplicate") as caught:
        parse_event(text.encode(), "site.created")
    assert caught.value.site_id == data["site"]["id"]


def test_a_huge_object_is_refused_early_and_cheaply() -> None:
    data = example("site.created")
    members = ", ".join(f'"K{i}": "v"' for i in range(60_000))
    text = json.dumps(data).replace('"env": {', f'"env": {{{members}, ', 1)
    started = time.perf_counter()
    with pytest.raises(InvalidEvent, match="more than 1000 members") as caught:
        parse_event(text.encode(), "site.created")
    assert len(caught.value.message) < 200
    assert caught.value.site_id == data["site"]["id"]
    # Not a timing assertion on speed, only that no validator ran per member: a loose bound.
    assert time.perf_counter() - started < 5


REJECTED_KEYS = [
    "DB_PASSWORD=hunter2",
    "PASSWORD hunter2",
    "0123456789ABCDEFhunter2",
    "1" + "x" * 20 + "hunter2",
    "9f3kQ7xLp2Zr8Tw",  # short, and all identifier characters: still not echoed whole
]


@pytest.mark.parametrize("key", [*REJECTED_KEYS, "X" * 129])
def test_a_rejected_env_key_is_not_echoed(key: str) -> None:
    data = example("site.created")
    data["site"]["env"] = {key: "value"}
    with pytest.raises(InvalidEvent) as caught:
        parse_event(body(data), "site.created")
    assert "hunter2" not in caught.value.message
    assert key not in caught.value.message
    assert "site.env." in caught.value.message


def test_the_path_of_a_rejected_key_keeps_only_its_identifier_prefix() -> None:
    data = example("site.created")
    data["site"]["env"] = {"DB_PASSWORD=hunter2": "v"}
    with pytest.raises(InvalidEvent) as caught:
        parse_event(body(data), "site.created")
    assert "site.env.DB_PASSW…" in caught.value.message


def test_field_names_in_error_paths_are_kept_whole() -> None:
    data = example("site.created")
    data["occurred_at"] = "yesterday"
    with pytest.raises(InvalidEvent, match="occurred_at"):
        parse_event(body(data), "site.created")


def test_the_key_of_a_bad_value_is_named_whole() -> None:
    data = example("site.created")
    data["site"]["env"] = {"API_TOKEN_FOR_THE_SHOP": "x\u0000"}
    with pytest.raises(InvalidEvent) as caught:
        parse_event(body(data), "site.created")
    assert "site.env.API_TOKEN_FOR_THE_SHOP:" in caught.value.message


@pytest.mark.parametrize("key", REJECTED_KEYS[:4])
def test_a_rejected_key_does_not_leak_through_its_values_error(key: str) -> None:
    data = example("site.created")
    data["site"]["env"] = {key: "v\u0000"}  # the value is bad too: pydantic names the key on its error
    with pytest.raises(InvalidEvent) as caught:
        parse_event(body(data), "site.created")
    assert "hunter2" not in caught.value.message and key not in caught.value.message
