"""`orchestrator healthcheck`: exit 0 while the running process's heartbeat says it is healthy.

Docker runs it every 5 s in every replica, so when the environment is plain (`without_settings`)
it imports nothing but the heartbeat's reader: not pydantic, the broker or Docker clients (a fifth
of a second of CPU a run, 5 % of a core per replica), nor argparse, logging or package metadata
(`orchestrator.cli` imports them for the other commands only).
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

from orchestrator.monitor import heartbeat

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from pathlib import Path

    from orchestrator.config import Settings

# What `healthcheck` reads without Settings, as Settings reads it (tests/unit/test_heartbeat.py pins both).
HEARTBEAT_FILE = ("ORCHESTRATOR_HEARTBEAT_FILE", "/tmp/orchestrator.heartbeat")
HEARTBEAT_INTERVAL = ("ORCHESTRATOR_HEARTBEAT_INTERVAL_SECONDS", "5.0")


def without_settings(environ: Mapping[str, str]) -> tuple[str, float] | None:
    """The heartbeat's path and interval, read without pydantic. None for anything unusual (a
    value Settings would refuse or a key spelled in another case), which Settings then reads, and
    refuses with its own message."""
    names = {HEARTBEAT_FILE[0], HEARTBEAT_INTERVAL[0]}
    if any(key.upper() in names and key not in names for key in environ):
        return None
    try:
        interval = float(environ.get(*HEARTBEAT_INTERVAL))
    except ValueError:
        return None
    path = environ.get(*HEARTBEAT_FILE)
    if not (math.isfinite(interval) and interval > 0) or not path:
        return None
    return path, interval


def check(path: str | Path, interval: float) -> int:
    healthy, why = heartbeat.check(path, max_age=3 * interval)
    print(why, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def main(args: argparse.Namespace, settings: Settings) -> int:
    return check(settings.heartbeat_file, settings.heartbeat_interval_seconds)
