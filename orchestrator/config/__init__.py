"""Every setting of the orchestrator, read once from the environment (prefix ``ORCHESTRATOR_``).

One group per module (broker, topology, processing, swarm, ...), each a class `Settings` inherits;
a new feature adds its own group module and one base below. Defaults fit the local stack built by
``scripts/stack-up.sh``; production overrides them (see ``compose.yaml``). docs/configuration.md is
generated from the groups, in the order of `Settings`' bases, with the comment above each field.
"""

from __future__ import annotations

from pydantic import model_validator

from orchestrator.config.base import CsvList, Group
from orchestrator.config.broker import BrokerSettings
from orchestrator.config.builds import BuildSettings
from orchestrator.config.databases import DatabaseServer, DatabaseSettings
from orchestrator.config.files import FileSettings, chunk_message_bytes
from orchestrator.config.https import HttpsSettings
from orchestrator.config.metrics import MetricsSettings
from orchestrator.config.processing import ProcessingSettings
from orchestrator.config.security import SecuritySettings
from orchestrator.config.sites import SiteSettings
from orchestrator.config.swarm import SwarmSettings
from orchestrator.config.terminals import TerminalSettings
from orchestrator.config.topology import TopologySettings
from orchestrator.config.traefik import TraefikSettings

__all__ = ["CsvList", "DatabaseServer", "Group", "Settings"]

REPLY_BUDGET_BYTES = 1024 * 1024


class Settings(
    BrokerSettings,
    TopologySettings,
    ProcessingSettings,
    SwarmSettings,
    TraefikSettings,
    HttpsSettings,
    SiteSettings,
    BuildSettings,
    TerminalSettings,
    FileSettings,
    DatabaseSettings,
    MetricsSettings,
    SecuritySettings,
):
    @model_validator(mode="after")
    def _chunks_fit_the_broker(self) -> Settings:
        largest = chunk_message_bytes(self.files_chunk_bytes)
        if largest > self.amqp_max_message_bytes:
            raise ValueError(
                f"files_chunk_bytes {self.files_chunk_bytes} makes messages of up to {largest} bytes (base64 and "
                f"the rest of a files.write or files.read), past amqp_max_message_bytes {self.amqp_max_message_bytes} "
                "(the broker's max_message_size): the broker would close the channel that carries one"
            )
        return self

    @property
    def database_retention_seconds(self) -> float:
        """How long a database whose site is gone is kept (default: the trash's age limit)."""
        days = self.database_retention_days
        return (self.trash_max_age_days if days is None else days) * 86400.0

    def reply_budget_bytes(self) -> int:
        """What one reply of entries or lines (a listing page, a log tail, a follow's batch) may
        hold: well below the broker's limit, and small enough for a browser."""
        return min(REPLY_BUDGET_BYTES, self.amqp_max_message_bytes // 4)
