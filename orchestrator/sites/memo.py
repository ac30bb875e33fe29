"""The spec fingerprints of desired states this process has built, for the last sites seen.

Admission and the spec are pure functions of the event's site, its version and the settings, so
a redelivered event (Director resending its fleet, a replay) whose site and version were built
before compares the service's fingerprint with the remembered one instead of building its spec
and digest again. Bounded: the least recently used site is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

from orchestrator_contract.sites import Site

# Sites remembered (each entry holds the event's site model: a few KiB at most).
REMEMBERED_SITES = 1024


class Fingerprints:
    def __init__(self, size: int = REMEMBERED_SITES) -> None:
        self._size = size
        self._seen: OrderedDict[int, tuple[Site, int, str]] = OrderedDict()

    def get(self, site: Site, version: int) -> str | None:
        """The fingerprint built for this very site at `version`, if remembered."""
        entry = self._seen.get(site.id)
        if entry is None or entry[1] != version or entry[0] != site:
            return None
        self._seen.move_to_end(site.id)
        return entry[2]

    def put(self, site: Site, version: int, fingerprint: str) -> None:
        self._seen[site.id] = (site, version, fingerprint)
        self._seen.move_to_end(site.id)
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
