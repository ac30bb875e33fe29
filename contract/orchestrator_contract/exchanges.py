"""The broker's objects Director and the orchestrator meet at, by their default names: Director
publishes to the `director.*` exchanges and reads the orchestrator's. A deployment may rename any
(the orchestrator's settings, the client's `Names`), both sides alike."""

from __future__ import annotations

SITE_EVENTS = "director.sites"
"""Director's site events (topic; routing key = the event's type)."""
TERMINAL_COMMANDS = "director.terminals"
"""Director's terminal commands (topic; routing key = the command's type)."""
FILE_REQUESTS = "director.files"
"""Director's file, log and metrics requests (topic; routing key = the operation)."""
DATABASE_REQUESTS = "director.databases"
"""Director's requests about site databases (topic; routing key = the operation)."""
RESULTS = "orchestrator.results"
"""What the orchestrator reports: results, health, drift, metrics (topic; routing key = the type)."""
TERMINAL_UPDATES = "orchestrator.terminals"
"""What happens in terminal sessions (topic; routing key `terminal.<session_id>`)."""
SITE_RESULTS = "orchestrator.site-results"
"""Director's durable queue of every site's results (`site.*`)."""
REPLY_QUEUE_PREFIX = "director.replies."
"""The queues Director may declare for replies and to follow results or terminals."""
