from __future__ import annotations

import asyncio

import pytest

from orchestrator import retry
from orchestrator.errors import (
    ConvergeTimeout,
    DockerConflict,
    DockerRejected,
    DockerUnavailable,
    ImageNotAllowed,
    InvalidEvent,
    OrchestratorError,
    PermanentError,
    PublishFailed,
    TransientError,
)
from orchestrator.retry import Next, after_failure


class Recorder:
    """Stands in for asyncio.sleep: records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def no_sleep(retrying: retry.Attempts) -> tuple[retry.Attempts, Recorder]:
    recorder = Recorder()
    return retrying.copy(sleep=recorder), recorder


async def run(retrying: retry.Attempts, outcomes: list[Exception | str]) -> tuple[str, int]:
    """Run `retrying` over a function that raises or returns the next outcome; (result, calls)."""
    calls = 0
    async for attempt in retrying:
        with attempt:
            outcome = outcomes[calls]
            calls += 1
            if isinstance(outcome, Exception):
                raise outcome
            result = outcome
    return result, calls


# --- after_failure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [TransientError("x"), DockerUnavailable("x"), DockerConflict("x"), PublishFailed("x")]
)
def test_transient_error_under_max_attempts_retries_later(error: OrchestratorError) -> None:
    assert after_failure(error, attempts=1, max_attempts=5) is Next.RETRY_LATER
    assert after_failure(error, attempts=4, max_attempts=5) is Next.RETRY_LATER


def test_transient_error_at_max_attempts_is_dead_lettered() -> None:
    assert after_failure(TransientError("x"), attempts=5, max_attempts=5) is Next.DEAD_LETTER
    assert after_failure(TransientError("x"), attempts=6, max_attempts=5) is Next.DEAD_LETTER


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("x"),
        InvalidEvent("x"),
        ImageNotAllowed("x"),
        DockerRejected("x"),
        ConvergeTimeout("x"),
        OrchestratorError("unexpected"),
    ],
)
def test_permanent_error_is_dead_lettered_at_once(error: OrchestratorError) -> None:
    assert after_failure(error, attempts=1, max_attempts=5) is Next.DEAD_LETTER
    assert after_failure(error, attempts=0, max_attempts=100) is Next.DEAD_LETTER


def test_one_max_attempt_means_no_retry_later() -> None:
    assert after_failure(TransientError("x"), attempts=1, max_attempts=1) is Next.DEAD_LETTER


# --- in_process ---------------------------------------------------------------------------------


async def test_in_process_retries_a_transient_error_then_succeeds() -> None:
    retrying, recorder = no_sleep(retry.in_process(5))
    result, calls = await run(retrying, [TransientError("down"), DockerUnavailable("down"), "ok"])
    assert (result, calls) == ("ok", 3)
    assert len(recorder.waits) == 2


async def test_in_process_does_not_retry_a_permanent_error() -> None:
    retrying, recorder = no_sleep(retry.in_process(5))
    with pytest.raises(ImageNotAllowed):
        await run(retrying, [ImageNotAllowed("no"), "ok"])
    assert recorder.waits == []


async def test_in_process_does_not_retry_other_exceptions() -> None:
    retrying, recorder = no_sleep(retry.in_process(5))
    with pytest.raises(KeyError):
        await run(retrying, [KeyError("bug"), "ok"])
    assert recorder.waits == []


async def test_in_process_reraises_the_error_itself_when_the_budget_is_spent() -> None:
    retrying, recorder = no_sleep(retry.in_process(0))
    with pytest.raises(DockerUnavailable, match="still down"):
        await run(retrying, [DockerUnavailable("still down"), "ok"])
    assert recorder.waits == []


async def test_in_process_waits_grow_with_jitter_and_a_cap() -> None:
    retrying, recorder = no_sleep(retry.in_process(3600))
    result, calls = await run(retrying, [TransientError("x")] * 12 + ["ok"])
    assert (result, calls) == ("ok", 13)
    assert len(recorder.waits) == 12
    assert all(0 <= wait <= 8 for wait in recorder.waits)
    # Exponential bounds: the n-th wait is at most 0.5 * 2**(n-1) seconds.
    assert all(wait <= 0.5 * 2**n for n, wait in enumerate(recorder.waits))


async def test_in_process_stops_once_the_budget_is_spent() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # each wait spends 10 s of a 30 s budget
        slept.append(seconds)
        retrying._started -= 10

    retrying = retry.in_process(30).copy(sleep=sleep)
    with pytest.raises(TransientError, match="3"):
        await run(retrying, [TransientError(str(n)) for n in range(10)])
    assert len(slept) == 3


async def test_a_first_attempt_that_succeeds_is_the_only_one() -> None:
    retrying, recorder = no_sleep(retry.on_conflict())
    assert await run(retrying, ["ok"]) == ("ok", 1)
    assert recorder.waits == []


# --- on_conflict --------------------------------------------------------------------------------


async def test_on_conflict_retries_conflicts_a_few_times() -> None:
    retrying, _ = no_sleep(retry.on_conflict(attempts=3))
    result, calls = await run(retrying, [DockerConflict("409"), DockerConflict("409"), "ok"])
    assert (result, calls) == ("ok", 3)
    retrying, _ = no_sleep(retry.on_conflict(attempts=3))
    with pytest.raises(DockerConflict):
        await run(retrying, [DockerConflict("409")] * 5)


async def test_on_conflict_leaves_other_transient_errors_alone() -> None:
    retrying, recorder = no_sleep(retry.on_conflict())
    with pytest.raises(DockerUnavailable):
        await run(retrying, [DockerUnavailable("down"), "ok"])
    assert recorder.waits == []


async def test_until_ready_waits_through_failures_then_returns() -> None:
    calls = 0
    async for attempt in retry.until_ready("a dependency", (ConnectionError,), asyncio.Event()):
        with attempt:
            calls += 1
            if calls < 3:
                raise ConnectionError("not yet")
    assert calls == 3


async def test_until_ready_gives_up_once_stopped() -> None:
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(ConnectionError):
        async for attempt in retry.until_ready("a dependency", (ConnectionError,), stop):
            with attempt:
                raise ConnectionError("down")


async def test_until_ready_without_patience_fails_at_once() -> None:
    calls = 0
    with pytest.raises(ConnectionError):
        async for attempt in retry.until_ready("a dependency", (), None):
            with attempt:
                calls += 1
                raise ConnectionError("down")
    assert calls == 1
