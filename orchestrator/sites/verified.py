"""Sites seen answering through Traefik, remembered until anything happens to their service.

A redelivered event of a site that is settled and was verified a moment ago, with no Docker event
about its service since (no task died, started or changed health, no update), reuses that
verification (the probe says when it was made) instead of asking Traefik again. While the event
stream is down nothing is remembered, and nothing is older than `ttl`.
"""

from __future__ import annotations

import threading
import time

from orchestrator.contract.sites import Probe
from orchestrator.sites.protocols import Deployed
from orchestrator.swarm.changes import DockerEvent


class Verified:
    def __init__(self, ttl: float, stream_up: threading.Event) -> None:
        self._ttl = ttl
        self._stream_up = stream_up
        self._seen: dict[str, tuple[int, Probe, float]] = {}  # service id -> (version index, probe, when)

    def get(self, service: Deployed) -> Probe | None:
        entry = self._seen.get(service.id)
        if entry is None or not self._stream_up.is_set():
            return None
        index, probe, when = entry
        if index != service.index or time.monotonic() - when > self._ttl:
            return None
        return probe

    def put(self, service: Deployed, probe: Probe) -> None:
        if self._stream_up.is_set():
            self._seen[service.id] = (service.index, probe, time.monotonic())

    def on_event(self, event: DockerEvent | None) -> None:
        if event is None:
            self._seen.clear()
        else:
            self._seen.pop(event.service_id, None)
