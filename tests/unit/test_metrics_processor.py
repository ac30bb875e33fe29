"""The metrics queues' processors: Director's requests answered from the reporter's memory, bad
requests refused like file requests, and the collectors' samples kept once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import DEFAULT_EXCHANGE, Completed, Received
from orchestrator.errors import InvalidRequest, OrchestratorError
from orchestrator.metrics.processor import CollectorSamples, MetricsRequests, parse_request, parse_sample
from orchestrator.metrics.reporter import MetricsReporter, Site
from orchestrator.metrics.samples import NodeSample
from orchestrator_contract import version
from orchestrator_contract.metrics import MetricsSite, MetricsSites

DIRECT = "amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5NTAyNjUzAAALOQ=="


async def _nothing() -> list[Site]:
    return []


async def _no_scrape() -> dict[str, str]:
    return {}


async def _publish(event: object) -> bool:
    return True


def reporter() -> MetricsReporter:
    board = MetricsReporter(_nothing, _no_scrape, _publish, deployment="d", period=60, active=None)
    board.merge(120, [Site(n, f"site_{n:04d}", 0) for n in (1, 2, 3)], {})
    return board


def envelope(key: str, body: object, reply_to: str | None = DIRECT, correlation_id: str | None = "c1") -> Envelope:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Envelope(raw, "director.files", key, user_id="director", reply_to=reply_to, correlation_id=correlation_id)


async def answer(processor: MetricsRequests, key: str, body: object) -> dict[str, object]:
    message = envelope(key, body)
    outcome = await processor.process(processor.parse(message), Received(message, "director"))
    assert isinstance(outcome, Completed)
    [reply] = outcome.outgoing
    assert (reply.exchange, reply.routing_key, reply.correlation_id) == (DEFAULT_EXCHANGE, DIRECT, "c1")
    assert not (reply.persistent or reply.mandatory or reply.confirmed)
    decoded: dict[str, object] = json.loads(reply.body)
    return decoded


async def test_requests_are_answered_from_memory() -> None:
    processor = MetricsRequests(reporter(), "director.replies.")
    one = await answer(processor, "metrics.site", {"site_id": 2})
    assert one["ok"] is True and one["result"]["metrics"]["state"] == "no_task"  # type: ignore[index]
    page = await answer(processor, "metrics.sites", {"limit": 2})
    assert [s["site_id"] for s in page["result"]["sites"]] == [1, 2]  # type: ignore[index]
    assert page["result"]["next_after"] == 2  # type: ignore[index]
    assert (await answer(processor, "metrics.nodes", {}))["result"] == {"nodes": []}
    assert (await answer(processor, "metrics.site", {"site_id": 9}))["result"] == {"site_id": 9, "metrics": None}


@pytest.mark.parametrize(
    ("key", "body", "why"),
    [
        ("metrics.site", {"site_id": "2"}, "does not match"),  # strict: "2" is not a site id
        ("metrics.site", {}, "does not match"),
        ("metrics.sites", {"limit": 501}, "does not match"),
        ("metrics.everything", {}, "unknown routing key"),
        ("metrics.site", b"x" * 5000, "larger than"),
    ],
)
def test_bad_requests_are_refused(key: str, body: object, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        MetricsRequests(reporter(), "director.replies.").parse(envelope(key, body))


def test_nobody_to_answer_is_refused() -> None:
    processor = MetricsRequests(reporter(), "director.replies.")
    with pytest.raises(InvalidRequest, match="not a reply queue"):
        processor.parse(envelope("metrics.site", {"site_id": 1}, reply_to="orchestrator.site-events"))
    with pytest.raises(InvalidRequest, match="correlation_id"):
        processor.parse(envelope("metrics.site", {"site_id": 1}, correlation_id=None))


def test_a_refusal_is_answered_and_a_strangers_is_not() -> None:
    processor = MetricsRequests(reporter(), "director.replies.")
    message = envelope("metrics.site", {})
    failed = processor.refused(InvalidRequest("no"), message, "director", None)
    assert failed.result is not None and json.loads(failed.result.body)["error"]["code"] == "invalid_request"
    assert processor.refused(InvalidRequest("no"), message, None, None).result is None
    bug = processor.refused(OrchestratorError("boom"), message, "director", MetricsSite(site_id=1))
    assert not bug.error.dead_letter  # answered at once; nothing for an operator to replay


def test_parsing() -> None:
    assert parse_request(b'{"after": 5}', "metrics.sites") == MetricsSites(after=5)
    assert parse_request(b'{"after": 5}', "metrics.sites", f"{version.MAJOR}.9.0") == MetricsSites(after=5)
    with pytest.raises(InvalidRequest, match="contract version"):
        parse_request(b'{"after": 5}', "metrics.sites", f"{version.MAJOR + 1}.0.0")
    with pytest.raises(InvalidRequest):
        parse_sample(b'{"node_id": "n"}')
    with pytest.raises(InvalidRequest, match="larger than"):
        parse_sample(b" " * (2 * 1024 * 1024))


async def test_samples_are_kept_once() -> None:
    board = reporter()
    processor = CollectorSamples(board)
    sample = NodeSample(
        node_id="n1",
        hostname="h",
        start=datetime.fromtimestamp(120, UTC),
        end=datetime.fromtimestamp(180, UTC),
        part=0,
        parts=1,
        sites=[],
    )
    message = Envelope(sample.model_dump_json().encode(), "orchestrator.collector", "sample", user_id="collector")
    parsed = processor.parse(message)
    first = await processor.process(parsed, Received(message, "collector"))
    second = await processor.process(parsed, Received(message, "collector"))
    assert isinstance(first, Completed) and isinstance(second, Completed)
    assert (first.outcome, first.quiet, second.outcome, second.quiet) == ("kept", True, "late", False)
