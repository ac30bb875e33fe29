"""The orchestrator's own health, without inbound HTTP: the running process writes a heartbeat
file (connected to the broker, consuming, Docker answering; for `orchestrator netguard`: the sites
network filtered); `orchestrator healthcheck` reads it.

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
    problems: list[str]  # what is wrong at that moment; none: healthy


def orchestrator_problems(broker: bool, consuming: bool, docker: bool) -> list[str]:
    found = [] if broker else ["not connected to the broker"]
    found += [] if consuming else ["not consuming"]
    return found + ([] if docker else ["docker does not answer"])


def write(path: Path, beat: Beat) -> None:
    """Atomically: a reader never sees half a beat. The temporary file is created anew, never
    through a link someone planted in a shared directory such as /tmp, and the rename replaces
    whatever stands at `path` (a link too) instead of writing through it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as file:
        file.write(json.dumps(asdict(beat)))
    partial.replace(path)


def check(path: Path, max_age: float, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) from the last beat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as file:
            beat = Beat(**json.loads(file.read(4096)))
        if not isinstance(beat.at, (int, float)) or not isinstance(beat.problems, list):
            raise TypeError("not a heartbeat")
    except FileNotFoundError:
        return False, f"no heartbeat at {path}: the orchestrator is not running (or still starting)"
    except OSError as exc:  # ELOOP: a link stands where the beat should be
        return False, f"unreadable heartbeat at {path}: {exc.strerror}"
    except (ValueError, TypeError) as exc:
        return False, f"unreadable heartbeat at {path}: {exc}"
    age = (time.time() if now is None else now) - beat.at
    if age > max_age:
        return False, f"last heartbeat {age:.0f}s ago (more than {max_age:.0f}s): the process is stuck or gone"
    if age < -max_age:
        return False, f"heartbeat dated {-age:.0f}s in the future: not written by a running orchestrator"
    if beat.problems:
        return False, "; ".join(beat.problems)
    return True, f"healthy (heartbeat {max(age, 0.0):.1f}s ago)"
