"""The retry policy, in one place.

1. In process: transient errors are retried with exponential backoff and jitter within a total
   time budget far below RabbitMQ's consumer timeout.
2. Past the budget the message goes to the delayed-retry queue (its TTL dead-letters it back to
   the work queue), so a long Docker outage costs no CPU and blocks no other site.
3. Past `max_attempts` deliveries through that queue it is dead-lettered, retryable.
Conflicts (the service changed under us) are retried at once after a reload, a few times.
"""

from __future__ import annotations

import enum

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random,
    wait_random_exponential,
)

from orchestrator.errors import DockerConflict, OrchestratorError, TransientError


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


class Step(enum.Enum):
    RETRY_LATER = "retry_later"
    DEAD_LETTER = "dead_letter"


def after_failure(error: OrchestratorError, attempts: int, max_attempts: int) -> Step:
    """What to do with a message whose processing failed on its `attempts`-th delivery."""
    if isinstance(error, TransientError) and attempts < max_attempts:
        return Step.RETRY_LATER
    return Step.DEAD_LETTER
