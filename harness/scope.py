"""Which share of the machine this test process may touch, so test runs and pytest-xdist workers
never step on each other: a block of site ids, a vhost, a deployment name.

`TEST_SLOT` (0-9) separates whole runs on one machine (e.g. two developers' checkouts); the
xdist worker (gw0, gw1, ...) separates the workers of one run, and `TEST_WORKER` (0-9) stands in
for it in a pytest run beside them (docs/development.md).
Each gets 1,000 site ids from 20000 + 10000 x slot + 1000 x worker: +0..499 for
`fresh_site_id()`, +500..599 for the security module's fixed ids, +600..999 for the fault streams.
The benchmark keeps 8000-8999 and 200000 on.
"""

from __future__ import annotations

import os

SLOT = int(os.environ.get("TEST_SLOT", "0"))
# xdist's own worker number wins: a TEST_WORKER left in the environment must not make every
# worker the same one.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
WORKER = int(_XDIST_WORKER or os.environ.get("TEST_WORKER") or 0)
if not (0 <= SLOT < 10 and 0 <= WORKER < 10):
    raise RuntimeError(f"TEST_SLOT {SLOT} and xdist worker {WORKER} must each be 0-9")

FIRST_SITE = 20000 + 10000 * SLOT + 1000 * WORKER
SITE_IDS = range(FIRST_SITE, FIRST_SITE + 1000)
SECURITY_SITES = FIRST_SITE + 500  # +0..99: test_security's own ids
FAULT_SITES = FIRST_SITE + 600  # +0..399: the fault streams' ids
NAME = f"s{SLOT}w{WORKER}"  # in vhost, deployment and directory names
DEPLOYMENT = f"test-{NAME}"

_next_site = FIRST_SITE


def next_site_id() -> int:
    """The id `fresh_site_id()` gives next (ids below it were handed out)."""
    return _next_site


def fresh_site_id() -> int:
    global _next_site
    site_id, _next_site = _next_site, _next_site + 1
    if site_id >= SECURITY_SITES:
        raise RuntimeError(f"this test process used up its site ids {SITE_IDS}")
    return site_id
