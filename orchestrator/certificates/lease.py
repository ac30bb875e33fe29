"""Which replica issues: the holder of a lease in the store, renewed as it works.

The active replica (the one Director's events reach) always takes it; a standby takes it only
once the holder let it run out, so a takeover starts renewals without waiting for an event. Two
takers at once: the last write wins, and the other sees that before its next step.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable

from orchestrator.certificates.store import Store

# Longer than an order may take (ca.ORDER_TIMEOUT): a replica busy with one never loses it.
LEASE_SECONDS = 120.0


class Lease:
    def __init__(self, store: Store, active: Callable[[], bool], clock: Callable[[], float]) -> None:
        self.store, self._active, self._clock = store, active, clock
        self.me = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def hold(self) -> bool:
        """Whether this replica may issue now (taking or renewing the lease if so)."""
        now = self._clock()
        current = await asyncio.to_thread(self.store.lease)
        if current is not None and current[0] != self.me and current[1] > now and not self._active():
            return False
        if current is not None and current[0] == self.me and current[1] - now > LEASE_SECONDS / 2:
            return True
        await asyncio.to_thread(self.store.save_lease, self.me, now + LEASE_SECONDS)
        if current is not None and current[0] == self.me:
            return True
        await asyncio.sleep(0.2)  # a racing taker's write lands first, or shows now
        taken = await asyncio.to_thread(self.store.lease)
        return taken is not None and taken[0] == self.me
