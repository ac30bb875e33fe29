"""The retry policy, in one place.

1. In process: transient errors are retried with exponential backoff and jitter within a total
   time budget far below RabbitMQ's consumer timeout.
2. Past the budget the message goes to the delayed-retry queue (its TTL dead-letters it back to
   the work queue), so a long Docker outage costs no CPU and blocks no other site.
3. Past `max_attempts` deliveries through that queue it is dead-lettered, retryable.
Conflicts (the service changed under us) are retried at once after a reload, a few times.

The loops a message's handling runs (`in_process`, `on_conflict`) are `Attempts`: tenacity's
`async for attempt in ...: with attempt:` shape for exactly these policies, whose first attempt
costs one small object (tenacity's per-attempt machinery was a fifth of a redelivered event's
time). Waiting for a dependency at start-up (`until_ready`) is tenacity's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
)

from orchestrator.errors import DockerConflict, OrchestratorError, TransientError
from orchestrator.logging_setup import fields

log = logging.getLogger("orchestrator")


class Attempt:
    """One attempt's block: a retryable error ends it quietly (the loop decides what follows)."""

    __slots__ = ("_retry_on", "error")

    def __init__(self, retry_on: type[BaseException] | tuple[type[BaseException], ...]) -> None:
        self._retry_on = retry_on
        self.error: BaseException | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        if error is not None and isinstance(error, self._retry_on):
            self.error = error
            return True
        return False


class Attempts:
    """`async for attempt in Attempts(...): with attempt: ...`: the block again after a retryable
    error (waiting `wait(n)` seconds after the n-th failure) until it succeeds, raises anything
    else, or the attempts or the time budget are spent (then the last error itself is raised)."""

    def __init__(
        self,
        retry_on: type[BaseException] | tuple[type[BaseException], ...],
        wait: Callable[[int], float],
        *,
        attempts: int | None = None,
        budget_seconds: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry_on = retry_on
        self.wait = wait
        self.attempts = attempts
        self.budget_seconds = budget_seconds
        self.sleep = sleep
        self._made = 0
        self._last: Attempt | None = None
        self._started = 0.0

    def copy(self, *, sleep: Callable[[float], Awaitable[None]]) -> Attempts:
        return Attempts(
            self.retry_on, self.wait, attempts=self.attempts, budget_seconds=self.budget_seconds, sleep=sleep
        )

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> Attempt:
        last = self._last
        if last is None:
            self._started = time.monotonic()
        elif last.error is None:
            raise StopAsyncIteration  # the block succeeded
        else:
            spent = self.budget_seconds is not None and time.monotonic() - self._started >= self.budget_seconds
            if spent or (self.attempts is not None and self._made >= self.attempts):
                raise last.error
            await self.sleep(self.wait(self._made))
        self._made += 1
        self._last = Attempt(self.retry_on)
        return self._last


def in_process(budget_seconds: float) -> Attempts:
    # Full jitter: a random wait up to 0.5 s, 1 s, 2 s, ... 8 s after the 1st, 2nd, 3rd, ... failure.
    return Attempts(
        TransientError, lambda n: random.uniform(0, min(8.0, 0.5 * 2 ** (n - 1))), budget_seconds=budget_seconds
    )


def on_conflict(attempts: int = 5) -> Attempts:
    return Attempts(DockerConflict, lambda _: random.uniform(0, 0.2), attempts=attempts)


def until_ready(what: str, errors: tuple[type[BaseException], ...], stop: asyncio.Event | None) -> AsyncRetrying:
    """At start-up: wait for a dependency (broker, Docker) with capped backoff instead of crashing;
    give up (re-raising the last error) only once `stop` is set, which also cuts a pause short."""

    async def pause(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()

    def waiting(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(f"waiting for {what}", extra=fields(error=str(error), retry_in=state.upcoming_sleep))

    return AsyncRetrying(
        retry=retry_if_exception_type(errors),
        wait=wait_exponential(multiplier=0.5, max=10),
        stop=lambda _: stop is not None and stop.is_set(),
        sleep=pause,
        before_sleep=waiting,
        reraise=True,
    )


class Next(enum.Enum):
    """Where a message whose processing failed goes next."""

    RETRY_LATER = "retry_later"
    DEAD_LETTER = "dead_letter"


def after_failure(error: OrchestratorError, attempts: int, max_attempts: int) -> Next:
    """What to do with a message whose processing failed on its `attempts`-th delivery."""
    if isinstance(error, TransientError) and attempts < max_attempts:
        return Next.RETRY_LATER
    return Next.DEAD_LETTER
