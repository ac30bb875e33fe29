"""Names of the AMQP headers the orchestrator writes, in one place.

They travel on the copies we re-publish (delayed retries, dead letters, replays) and are believed
only on messages that came back through our own requeue exchange (see `envelope.Envelope`).
"""

from __future__ import annotations

PREFIX = "x-orchestrator-"
ATTEMPTS = "x-orchestrator-attempts"
ROUTING_KEY = "x-orchestrator-routing-key"
EXCHANGE = "x-orchestrator-exchange"
PUBLISHER = "x-orchestrator-publisher"
ERROR_CODE = "x-orchestrator-error-code"
ERROR_MESSAGE = "x-orchestrator-error-message"
FIRST_FAILURE = "x-orchestrator-first-failure"
LAST_FAILURE = "x-orchestrator-last-failure"
REPLAYED = "x-orchestrator-replayed"
# On a dead-letter copy cut to its head: the original body's size and sha256.
TRUNCATED = "x-orchestrator-truncated"
BODY_SHA256 = "x-orchestrator-body-sha256"

# What a failure writes on its copy; a replay strips these so the event starts afresh.
FAILURE = (ATTEMPTS, ERROR_CODE, ERROR_MESSAGE, FIRST_FAILURE, LAST_FAILURE)
# Where the message came from; a replay publishes there and strips these too.
ORIGIN = (ROUTING_KEY, EXCHANGE, PUBLISHER)

# The broker's own dead-letter bookkeeping; RabbitMQ < 4.0.1 drops re-published messages carrying them.
BROKER_DEATH = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)
