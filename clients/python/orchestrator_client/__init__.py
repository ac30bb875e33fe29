"""Director's client of the orchestrator: site events, results, files, logs and terminals over
RabbitMQ, with the contract's own models (`orchestrator_contract`).

    from orchestrator_client import Client, SyncClient

`Client` is asynchronous (asyncio); `SyncClient` is the same API for code without an event loop
(a Django view, a Celery task). Errors: `orchestrator_client.errors`.
"""

from __future__ import annotations

from orchestrator_client.client import Client
from orchestrator_client.errors import ClientError, OrchestratorError, error_for
from orchestrator_client.names import Names
from orchestrator_client.results import Delivery, Report, Subscription
from orchestrator_client.sync import SyncClient
from orchestrator_contract.version import VERSION as CONTRACT_VERSION

__version__ = "1.0.0"
__all__ = [
    "CONTRACT_VERSION",
    "Client",
    "ClientError",
    "Delivery",
    "Names",
    "OrchestratorError",
    "Report",
    "Subscription",
    "SyncClient",
    "error_for",
]
