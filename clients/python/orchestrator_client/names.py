"""The broker's objects the client talks to, by the names the orchestrator gives them (its
defaults; a deployment that renames them passes its names to `Client.connect`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    sites: str = "director.sites"
    """Director's site events (topic; routing key = the event's type)."""
    terminals: str = "director.terminals"
    """Director's terminal commands (topic; routing key = the command's type)."""
    files: str = "director.files"
    """Director's file, log and metrics requests (topic; routing key = the operation)."""
    databases: str = "director.databases"
    """Director's requests about site databases (topic; routing key = the operation)."""
    results: str = "orchestrator.results"
    """What the orchestrator reports: results, health, drift (topic; routing key = the type)."""
    terminal_updates: str = "orchestrator.terminals"
    """What happens in terminal sessions (topic; routing key `terminal.<session_id>`)."""
    site_results: str = "orchestrator.site-results"
    """Director's durable queue of every site's results (`site.*`)."""

    def exchange_of(self, operation: str) -> str:
        """Where a request goes: `database.*` to `databases`, the rest (`files.*`, `logs.*`,
        `metrics.*`) to `files`."""
        return self.databases if operation.startswith("database.") else self.files


DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
