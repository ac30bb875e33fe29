"""What the running service says of its own accord on the results exchange (routing key = the
report's type): `site.health` changes and the periodic `orchestrator.drift` report. Only the
active replica speaks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from orchestrator.config import Settings
from orchestrator.databases.servers import Databases
from orchestrator.errors import OrchestratorError
from orchestrator.files.sitedirs import SiteDirs
from orchestrator.logging_setup import fields
from orchestrator.monitor.survey import survey
from orchestrator.swarm.services import Swarm
from orchestrator_contract.results import DriftReport, SiteHealth

log = logging.getLogger("orchestrator.reports")

Report = SiteHealth | DriftReport
# Publishes a report; False when the broker did not take it (the caller says it again later).
Publish = Callable[[Report], Awaitable[bool]]


async def report_drift(
    swarm: Swarm,
    sitedirs: SiteDirs,
    databases: Databases,
    settings: Settings,
    publish: Publish,
    active: asyncio.Event,
) -> None:
    """Every `drift_report_seconds`, an `orchestrator.drift` report when anything drifted."""
    while True:
        await asyncio.sleep(settings.drift_report_seconds)
        if not active.is_set():
            continue
        try:
            fleet = await survey(swarm, sitedirs, settings, databases)
        except OrchestratorError as exc:
            log.warning("could not survey the fleet for drift", extra=fields(error=exc.message))
            continue
        except Exception:  # keep reporting next time, whatever the sites root holds
            log.exception("drift survey failed")
            continue
        if fleet.drift:
            await publish(DriftReport(drift=fleet.drift))
            log.info("drift reported", extra=fields(count=len(fleet.drift)))
