"""The orchestrator's own health, without inbound HTTP: the running process writes a heartbeat
file (connected to the broker, consuming, Docker answering); `orchestrator healthcheck` reads it.

Kept free of aio-pika and the docker SDK, so the check (run by Docker every few seconds) starts
fast and cannot hang on a dead broker itself.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Beat:
    at: float  # epoch seconds
    broker: bool
    consuming: bool
    docker: bool

    @property
    def problems(self) -> list[str]:
        found = [] if self.broker else ["not connected to the broker"]
        found += [] if self.consuming else ["not consuming"]
        return found + ([] if self.docker else ["docker does not answer"])


def write(path: Path, beat: Beat) -> None:
    """Atomically: a reader never sees half a beat."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(asdict(beat)))
    partial.replace(path)


def check(path: Path, max_age: float, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) from the last beat."""
    try:
        beat = Beat(**json.loads(path.read_text()))
    except FileNotFoundError:
        return False, f"no heartbeat at {path}: the orchestrator is not running (or still starting)"
    except (ValueError, TypeError) as exc:
        return False, f"unreadable heartbeat at {path}: {exc}"
    age = (time.time() if now is None else now) - beat.at
    if age > max_age:
        return False, f"last heartbeat {age:.0f}s ago (more than {max_age:.0f}s): the process is stuck or gone"
    if beat.problems:
        return False, "; ".join(beat.problems)
    return True, f"healthy (heartbeat {age:.1f}s ago)"
