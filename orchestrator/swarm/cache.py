"""What the orchestrator remembers about the swarm between Docker's change events, with one owner
and one rule for forgetting it.

- A change to a service (a task started, died or changed health, the service was updated) drops
  everything remembered about that service, including a read of it still in flight.
- A lost event stream drops everything and marks the domain claim index stale: until the stream is
  back and the index rebuilt, nothing is answered from memory.

Three things are remembered: services as last read (so a redelivery costs no Docker call), checks
made against a service's current tasks (a route verified through Traefik), and the domain claim
index (`sites.domains.ClaimIndex`), whose entries a service change refreshes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.sites.domains import ClaimIndex
from orchestrator.sites.service import Service
from orchestrator.swarm.changes import DockerChange
from orchestrator_contract.results import Probe


@dataclass(frozen=True)
class Seen:
    """A point in the stream of changes: a read begun there may be remembered only if no change to
    its service arrived since."""

    epoch: int
    changes: int


class SwarmCache:
    def __init__(self, stream_up: threading.Event | None) -> None:
        # None: no event stream at all (the CLI): nothing is ever remembered.
        self._stream_up = stream_up
        self._epoch = 0  # bumped when the stream is lost
        self._changes: dict[str, int] = {}  # service name -> changes seen in this epoch
        self._memos: dict[str, dict[str, Any]] = {}  # service name -> what is remembered of it
        self.claims = ClaimIndex()
        # The claim index matches the swarm (rebuilt since the stream last came back).
        self.claims_current = False

    @property
    def live(self) -> bool:
        return self._stream_up is not None and self._stream_up.is_set()

    def seen(self, name: str) -> Seen:
        return Seen(self._epoch, self._changes.get(name, 0))

    def get(self, name: str, key: str) -> Any:
        return self._memos.get(name, {}).get(key) if self.live else None

    def put(self, name: str, key: str, value: Any, since: Seen) -> None:
        """Remember `value` about `name`, unless its service changed since `since`."""
        if self.live and since == self.seen(name):
            self._memos.setdefault(name, {})[key] = value

    def forget(self, name: str) -> None:
        """Drop what is remembered about `name`: our own writes change it too."""
        self._memos.pop(name, None)
        self._changes[name] = self._changes.get(name, 0) + 1

    def on_change(self, change: DockerChange | None) -> None:
        """The one invalidation rule (see the module docstring)."""
        if change is None:
            self._epoch += 1
            self._changes.clear()
            self._memos.clear()
            self.claims_current = False
            return
        self.forget(change.service_name)
        if change.type == "service" and change.action == "remove":
            self._changes.pop(change.service_name, None)  # bounded by the services that exist

    # --- the service as last read ---------------------------------------------------------------

    def service(self, name: str) -> Service | None:
        found: Service | None = self.get(name, "service")
        return found

    def remember_service(self, service: Service, since: Seen) -> None:
        # Only a settled service: a task turning running has no event of its own.
        if service.settled:
            self.put(service.name, "service", service, since)


class VerifiedRoutes:
    """Checks through Traefik remembered per service until anything happens to its tasks (see
    `SwarmCache`), never longer than `ttl` seconds, and only for the same service version."""

    def __init__(self, cache: SwarmCache, ttl: float) -> None:
        self._cache = cache
        self._ttl = ttl

    def get(self, service: Service) -> Probe | None:
        entry = self._cache.get(service.name, "verified")
        if entry is None:
            return None
        index, probe, when = entry
        if index != service.index or time.monotonic() - when > self._ttl:
            return None
        probe_: Probe = probe
        return probe_

    def put(self, service: Service, probe: Probe) -> None:
        self._cache.put(
            service.name, "verified", (service.index, probe, time.monotonic()), self._cache.seen(service.name)
        )
