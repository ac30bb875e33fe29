"""Exchanges and queues: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pydantic import Field

from orchestrator.config.base import Group
from orchestrator_contract import exchanges


class TopologySettings(Group):
    # --- topology -----------------------------------------------------------------------------
    # Director's site events: its exchange, the binding, and the work queue they are consumed from.
    inbound_exchange: str = exchanges.SITE_EVENTS
    binding_key: str = "site.*"
    work_queue: str = "orchestrator.site-events"
    # Where results, `site.health` and `orchestrator.drift` are published.
    results_exchange: str = exchanges.RESULTS
    # A durable queue of results for Director, so results survive while Director is away.
    # Empty disables it; results are still published with `mandatory`.
    results_queue: str = exchanges.SITE_RESULTS
    # Delayed retries: a transiently failed event waits in the retry queue for its TTL.
    retry_exchange: str = "orchestrator.retry"
    retry_queue: str = "orchestrator.site-events.retry"
    # Where expired retries come back from; bound to the work queue. Only our user may write here.
    requeue_exchange: str = "orchestrator.requeue"
    # Dead letters, with why in their headers (`orchestrator dead-letters` reads the queue).
    dead_letter_exchange: str = "orchestrator.dead-letters"
    dead_letter_queue: str = "orchestrator.site-events.dead"
    # Redeliveries before the broker dead-letters a message that keeps crashing the process. A queue
    # argument, like retry_delay_seconds: RabbitMQ refuses to redeclare a queue with another value
    # (the orchestrator exits at start with PRECONDITION_FAILED), so changing it on a running
    # deployment means deleting and recreating the queue.
    delivery_limit: int = Field(default=5, ge=1)
    # Terminal sessions: Director's commands (their own queue, so a keystroke never waits behind a
    # deploy) and the sessions' events, routing key `terminal.<session_id>`.
    terminal_exchange: str = exchanges.TERMINAL_COMMANDS
    terminal_binding_key: str = "terminal.*"
    terminal_queue: str = "orchestrator.terminal-commands"
    terminal_events_exchange: str = exchanges.TERMINAL_UPDATES
    # Site files and logs: Director's requests (routing key = the operation), consumed from their
    # own queue; replies go to the default exchange with routing key = the request's `reply_to`,
    # which must be RabbitMQ's direct reply-to or a queue named `files_reply_queue_prefix`...
    files_exchange: str = exchanges.FILE_REQUESTS
    files_queue: str = "orchestrator.file-requests"
    files_reply_queue_prefix: str = Field(default=exchanges.REPLY_QUEUE_PREFIX, min_length=2)
    # Site databases: Director's requests (routing key = the operation), answered as file
    # requests are (the same reply queues).
    databases_exchange: str = exchanges.DATABASE_REQUESTS
    databases_queue: str = "orchestrator.database-requests"

    # The name of this deployment, on what it creates that only it may clean up (terminal
    # containers): two deployments on one swarm (or two test workers) leave each other's alone.
    deployment: str = Field(default="director", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
