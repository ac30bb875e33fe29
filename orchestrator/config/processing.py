"""How events are processed: a group of `Settings` (orchestrator/config/__init__.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from orchestrator.config.base import CsvList, Group
from orchestrator.logging_setup import Level


class ProcessingSettings(Group):
    # --- processing ---------------------------------------------------------------------------
    # Docker API calls in flight at once: the only thing an event holds a worker for (waiting for
    # a rollout or a route holds none).
    concurrency: int = Field(default=8, ge=1)
    # Messages held at once; more than `concurrency`, so events queued behind one busy site's lock
    # do not take every slot from the other sites.
    prefetch: int = Field(default=32, ge=1)
    # How long a publish waits for the broker's confirm.
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # In-process retry budget for transient errors; far below RabbitMQ's 30 min consumer timeout.
    retry_budget_seconds: float = Field(default=30.0, ge=0)
    # The retry queue's TTL: how long a transiently failed event waits before it is tried again (a
    # queue argument: see delivery_limit).
    retry_delay_seconds: float = Field(default=15.0, gt=0)
    # Deliveries before a transiently failing event is dead-lettered.
    max_attempts: int = Field(default=5, ge=1)
    # On SIGTERM, how long in-flight messages may take to finish; the rest go back to the queue.
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    # Log lines (JSON, on stderr) at this level and above; unset: INFO for run, netguard and
    # docker-proxy, WARNING for the one-shot commands, whose report (on stdout) is what one reads.
    log_level: Level | None = None
    # `orchestrator healthcheck` reads this file; the running process rewrites it every interval.
    heartbeat_file: Path = Path("/tmp/orchestrator.heartbeat")
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0)
    # Broker users whose site events, terminal commands and file requests are accepted (the broker
    # vouches for the messages' user_id).
    allowed_publishers: Annotated[CsvList, Field(default_factory=lambda: ["director"])]
