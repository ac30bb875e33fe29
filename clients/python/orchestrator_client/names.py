"""The broker's objects the client talks to, by the names the orchestrator gives them (its
defaults; a deployment that renames them passes its names to `Client.connect`)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator_contract import exchanges


@dataclass(frozen=True)
class Names:
    """Each field's meaning: orchestrator_contract.exchanges."""

    sites: str = exchanges.SITE_EVENTS
    terminals: str = exchanges.TERMINAL_COMMANDS
    files: str = exchanges.FILE_REQUESTS
    databases: str = exchanges.DATABASE_REQUESTS
    results: str = exchanges.RESULTS
    terminal_updates: str = exchanges.TERMINAL_UPDATES
    site_results: str = exchanges.SITE_RESULTS

    def exchange_of(self, operation: str) -> str:
        """Where a request goes: `database.*` to `databases`, the rest (`files.*`, `logs.*`,
        `metrics.*`) to `files`."""
        return self.databases if operation.startswith("database.") else self.files


DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
