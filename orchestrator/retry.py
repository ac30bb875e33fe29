"""The retry policy, in one place.

1. In process: transient errors are retried with exponential backoff and jitter within a total
   time budget far below RabbitMQ's consumer timeout.
2. Past the budget the message goes to the delayed-retry queue (its TTL dead-letters it back to
   the work queue), so a long Docker outage costs no CPU and blocks no other site.
3. Past `max_attempts` deliveries through that queue it is dead-lettered, retryable.
Conflicts (the service changed under us) are retried at once after a reload, a few times.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
    wait_random_exponential,
)

from orchestrator.errors import DockerConflict, OrchestratorError, TransientError
from orchestrator.logging_setup import fields

log = logging.getLogger("orchestrator")


def in_process(budget_seconds: float) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=0.5, max=8),
        stop=stop_after_delay(budget_seconds),
        reraise=True,
    )


def on_conflict(attempts: int = 5) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception_type(DockerConflict),
        wait=wait_random(0, 0.2),
        stop=stop_after_attempt(attempts),
        reraise=True,
    )


def until_ready(what: str, errors: tuple[type[BaseException], ...], stop: asyncio.Event | None) -> AsyncRetrying:
    """At start-up: wait for a dependency (broker, Docker) with capped backoff instead of crashing;
    give up (re-raising the last error) only once `stop` is set, which also cuts a pause short."""

    async def pause(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

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
