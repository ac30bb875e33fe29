"""The file threads: one site's jobs hold at most their share of them, the others wait their turn
without a thread, and another site's job runs meanwhile."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from orchestrator.files.worker import SiteRef, Worker

SLOW, OTHER = SiteRef(1, "site_0001", os.getuid()), SiteRef(2, "site_0002", os.getuid())


async def test_a_sites_slow_jobs_hold_their_share_of_threads_and_another_site_is_served(tmp_path: Path) -> None:
    worker = Worker(tmp_path, 4, per_site=2)
    release, lock = threading.Event(), threading.Lock()
    running = most = 0

    def slow() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1

    try:
        jobs = [asyncio.create_task(worker.as_site(SLOW, slow)) for _ in range(12)]
        await asyncio.sleep(0.2)
        # Two threads of four are the slow site's; the other site's job runs at once beside them.
        async with asyncio.timeout(10):
            assert await worker.as_site(OTHER, lambda: "served") == "served"
        assert most == 2 and not any(job.done() for job in jobs)
        release.set()
        await asyncio.gather(*jobs)
        assert most == 2 and worker._turns == {}  # nothing kept for a site without jobs
    finally:
        release.set()
        worker.close()
