"""File requests on the bus: which reply queues may be answered, what is replied and what is
dead-lettered, the log lines of a service, and a site's deletion closing its sessions."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrator.bus.envelope import Envelope
from orchestrator.bus.outcomes import DEFAULT_EXCHANGE, Completed, Received, Requester
from orchestrator.bus.replies import reply_queue_allowed
from orchestrator.config import Settings
from orchestrator.errors import DockerUnavailable, FileRefused, InvalidRequest, OrchestratorError, Unauthenticated
from orchestrator.files.processor import FileRequests
from orchestrator.files.service import SiteFiles
from orchestrator.files.worker import Worker
from orchestrator.swarm.logs import parse_line, parse_ns
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import FileRequest, FilesStat

PREFIX = "director.replies."
DIRECT = "amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5NTAyNjUzAAALOQAAAABrEf0/.H74X/UVhbz6Stge2Y5JTkQ=="


@pytest.mark.parametrize(
    "name", [DIRECT, "director.replies.a", "director.replies.web-7f.session:1", PREFIX + "x" * 200]
)
def test_reply_queues_may_be_answered(name: str) -> None:
    assert reply_queue_allowed(name, PREFIX)


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "amq.rabbitmq.reply-to",  # the pseudo queue's name itself, not an address of a requester
        "amq.rabbitmq.reply-to.",
        "director.replies.",
        "director.repliesx",
        "director.replies.with space",
        "orchestrator.site-events",
        "orchestrator.site-events.dead",
        "director.sites",
        PREFIX + "x" * 300,
    ],
)
def test_other_queues_are_never_answered_into(name: str | None) -> None:
    assert not reply_queue_allowed(name, PREFIX)


class FakeFiles:
    def __init__(self, answer: bytes | None = b'{"ok":true,"result":{}}', error: OrchestratorError | None = None):
        self.answer, self.error = answer, error
        self.handled: list[tuple[FileRequest, Requester]] = []

    async def handle(self, request: FileRequest, requester: Requester) -> bytes | None:
        self.handled.append((request, requester))
        if self.error is not None:
            raise self.error
        return self.answer


def envelope(body: dict[str, Any] | bytes, *, op: str = "files.stat", reply_to: str | None = DIRECT,
             correlation_id: str | None = "c1") -> Envelope:  # fmt: skip
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Envelope(raw, "director.files", op, "director", "m1", correlation_id, reply_to)


def processor(files: FakeFiles) -> FileRequests:
    return FileRequests(files, PREFIX, 4 * 1024 * 1024)  # type: ignore[arg-type]


async def test_a_request_is_answered_at_its_reply_to_with_its_correlation_id() -> None:
    files = FakeFiles()
    requests = processor(files)
    env = envelope({"site_id": 7, "path": "public"})
    outcome = await requests.process(requests.parse(env), Received(env, "director"))
    assert isinstance(outcome, Completed)
    (reply,) = outcome.outgoing
    assert (reply.exchange, reply.routing_key, reply.correlation_id) == (DEFAULT_EXCHANGE, DIRECT, "c1")
    assert (reply.persistent, reply.mandatory) == (False, False)  # nobody waiting: dropped, never retried
    assert files.handled[0][1] == Requester(DIRECT, "c1")
    assert outcome.facts == {"site_id": 7, "op": "files.stat", "path": "public"}


async def test_a_stream_replies_on_its_own_and_chunks_are_not_logged_one_by_one() -> None:
    requests = processor(FakeFiles(answer=None))
    env = envelope({"site_id": 7, "path": "a", "upload_id": str(uuid.uuid4()), "offset": 0}, op="files.write")
    outcome = await requests.process(requests.parse(env), Received(env, "director"))
    assert isinstance(outcome, Completed) and outcome.outgoing == [] and outcome.quiet


@pytest.mark.parametrize(
    ("reply_to", "correlation_id"), [(None, "c1"), ("orchestrator.site-events", "c1"), (DIRECT, None), (DIRECT, "")]
)
def test_a_request_without_a_usable_reply_to_or_correlation_id_is_invalid(
    reply_to: str | None, correlation_id: str | None
) -> None:
    with pytest.raises(InvalidRequest):
        processor(FakeFiles()).parse(envelope({"site_id": 1}, reply_to=reply_to, correlation_id=correlation_id))


def test_a_malformed_request_is_answered_and_dead_lettered() -> None:
    env = envelope(b"{oops")
    requests = processor(FakeFiles())
    with pytest.raises(InvalidRequest) as caught:
        requests.parse(env)
    failed = requests.refused(caught.value, env, "director", None)
    assert failed.error.dead_letter and failed.result is not None
    assert json.loads(failed.result.body)["error"]["code"] == "invalid_request"


def test_nobody_is_answered_into_a_queue_that_is_not_a_reply_queue() -> None:
    env = envelope({"site_id": 1}, reply_to="orchestrator.site-events")
    failed = processor(FakeFiles()).refused(InvalidRequest("no usable reply_to"), env, "director", None)
    assert failed.result is None and failed.error.dead_letter


def test_a_stranger_hears_nothing() -> None:
    env = envelope({"site_id": 1})
    failed = processor(FakeFiles()).refused(Unauthenticated("who?"), env, None, None)
    assert failed.result is None and failed.error.dead_letter and failed.publisher is None


async def test_a_refusal_is_only_answered_never_dead_lettered() -> None:
    for error in (FileRefused("no", code=ErrorCode.NOT_FOUND), DockerUnavailable("docker is down")):
        requests = processor(FakeFiles(error=error))
        env = envelope({"site_id": 1, "path": "x"})
        message = requests.parse(env)
        try:
            await requests.process(message, Received(env, "director"))
        except OrchestratorError as exc:
            failed = requests.refused(exc, env, "director", message)
        assert not failed.error.dead_letter, error
        assert failed.result is not None
        assert json.loads(failed.result.body)["error"]["code"] == error.code.value


@pytest.mark.parametrize(
    ("op", "body", "quiet"),
    [
        ("files.read", {"path": "a"}, True),
        ("files.write", {"path": "a", "upload_id": str(uuid.uuid4()), "offset": 0}, True),
        ("files.write", {"path": "a", "upload_id": str(uuid.uuid4()), "offset": 0, "final": True}, False),
        ("files.delete", {"path": "a"}, False),
    ],
)
async def test_reads_and_chunks_make_no_log_line_but_the_final_chunk_does(
    op: str, body: dict[str, Any], quiet: bool
) -> None:
    requests = processor(FakeFiles())
    env = envelope({"site_id": 1, **body}, op=op)
    outcome = await requests.process(requests.parse(env), Received(env, "director"))
    assert isinstance(outcome, Completed) and outcome.quiet is quiet


# --- service log lines ----------------------------------------------------------------------------------

LINE = (
    b"2026-12-04T00:15:12.4624897Z com.docker.swarm.node.id=xo6,com.docker.swarm.service.id=wtk,"
    b"com.docker.swarm.task.id=erdnidfhwlb1 connecting with password hunter2 now\n"
)


def test_a_service_log_line_names_its_task_and_masks_env_values() -> None:
    record = parse_line(LINE, ["hunter2"])
    assert record is not None
    assert (record.task, record.text) == ("erdnidfhwlb1", "connecting with password *** now")
    assert record.ns == parse_ns("2026-12-04T00:15:12.462489700Z")
    assert record.ts.isoformat() == "2026-12-04T00:15:12.462489+00:00"


@pytest.mark.parametrize("raw", [b"", b"not a timestamp here\n", b"2026-12-04 00:15:12 text\n"])
def test_anything_else_is_not_a_log_line(raw: bytes) -> None:
    assert parse_line(raw, []) is None


def test_a_line_without_details_keeps_all_its_text() -> None:
    record = parse_line(b"2026-12-04T00:15:12Z plain text\n", [])
    assert record is not None and (record.task, record.text) == ("", "plain text")


# --- per-site bounds ------------------------------------------------------------------------------------


async def test_requests_of_one_site_past_its_concurrency_are_busy_and_others_are_not(tmp_path: Path) -> None:
    release = asyncio.Event()

    class SlowServices:
        async def get(self, name: str) -> None:
            await release.wait()
            return None  # then: no such site

    settings = Settings(files_site_concurrency=2)
    worker = Worker(tmp_path, 1)
    files = SiteFiles(settings, worker, SlowServices(), None, None)  # type: ignore[arg-type]
    requester = Requester(DIRECT, "c")
    held = [asyncio.create_task(files.handle(FilesStat(site_id=1), requester)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(FileRefused) as caught:
        await files.handle(FilesStat(site_id=1), requester)
    assert caught.value.code is ErrorCode.BUSY
    other = asyncio.create_task(files.handle(FilesStat(site_id=2), requester))  # another site is not held up
    release.set()
    for task in [*held, other]:
        with pytest.raises(FileRefused) as caught:
            await task
        assert caught.value.code is ErrorCode.SITE_NOT_FOUND
    worker.close()
