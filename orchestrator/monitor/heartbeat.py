"""The orchestrator's own health, without inbound HTTP: the running process writes a heartbeat
file (consuming, Docker answering; for `orchestrator netguard`: the sites network filtered);
`orchestrator healthcheck` reads it.

The check fails for what a restart of this process can mend: a stuck process (a stale beat), a
consumer gone while the connection is up, Docker not answering. A broker that went away is said
(degraded) but does not fail it: the connection comes back by itself when the broker does, and
Swarm replaces a container whose check keeps failing, so an outage longer than the retries would
restart every replica at once, over and over, for nothing. A process that never reached the
broker writes no beat at all, so a release that cannot connect fails its check and rolls back.

Kept free of aio-pika and the docker SDK, so the check (run by Docker every few seconds) cannot
hang on a dead broker itself, and of every import the check does not need (dataclasses, pathlib),
so that it starts in a third of the time.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path


class Beat(NamedTuple):
    at: float  # epoch seconds
    problems: list[str]  # what is wrong at that moment (the check fails); none: healthy
    degraded: tuple[str, ...] | list[str] = ()  # what is away but comes back by itself (said, not failed)


def orchestrator_beat(at: float, broker_away: float | None, consuming: bool, docker: bool) -> Beat:
    """`broker_away`: seconds since the connection was lost, None while it is up."""
    problems = [] if consuming or broker_away is not None else ["not consuming"]
    problems += [] if docker else ["docker does not answer"]
    away = [] if broker_away is None else [f"not connected to the broker for {broker_away:.0f}s (reconnecting)"]
    return Beat(at, problems, away)


def write(path: Path, beat: Beat) -> None:
    """Atomically: a reader never sees half a beat. The temporary file is created anew, never
    through a link someone planted in a shared directory such as /tmp, and the rename replaces
    whatever stands at `path` (a link too) instead of writing through it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as file:
        file.write(json.dumps(beat._asdict()))
    partial.replace(path)


def check(path: str | Path, max_age: float, now: float | None = None) -> tuple[bool, str]:
    """(healthy, why) from the last beat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as file:
            beat = Beat(**json.loads(file.read(4096)))
        if (
            not isinstance(beat.at, (int, float))
            or not isinstance(beat.problems, list)
            or not isinstance(beat.degraded, (list, tuple))
        ):
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
    degraded = f"; degraded: {'; '.join(beat.degraded)}" if beat.degraded else ""
    return True, f"healthy (heartbeat {max(age, 0.0):.1f}s ago){degraded}"
