"""Walks of a whole tree (usage, recursive delete, archive) and scans of one directory (a listing
page) count against a `Budget` and stop with `too_large` rather than run on."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from orchestrator.errors import FileRefused
from orchestrator.files import confined, paths
from orchestrator.files.paths import Parts
from orchestrator_contract.codes import ErrorCode
from orchestrator_contract.files import UsageResult

# Directory levels a walk descends (each holds a descriptor open).
MAX_DEPTH = 128
# Look at the clock once per this many entries.
CLOCK_EVERY = 512


@dataclass
class Budget:
    """How long a walk or scan may take and how many entries it may see."""

    seconds: float
    entries: int
    what: str = "the walk"
    seen: int = 0
    started: float = field(default_factory=time.monotonic)

    def tick(self, count: int = 1) -> None:
        self.seen += count
        if self.seen > self.entries:
            raise FileRefused(
                f"{self.what} stopped: more than {self.entries} entries (FILES_WALK_MAX_ENTRIES)",
                code=ErrorCode.TOO_LARGE,
            )
        if self.seen % CLOCK_EVERY < count:
            self.check_clock()

    def check_clock(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise FileRefused(
                f"{self.what} stopped after {self.seconds:g} s (FILES_WALK_MAX_SECONDS), {self.seen} entries in",
                code=ErrorCode.TOO_LARGE,
            )

    def descend(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise FileRefused(f"{self.what} stopped: deeper than {MAX_DEPTH} levels", code=ErrorCode.TOO_LARGE)


@contextlib.contextmanager
def closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


Visit = Callable[[int, str, os.stat_result, Parts], None]


def walk(fd: int, parts: Parts, budget: Budget, visit: Visit, depth: int = 0) -> None:
    """Call `visit(dir_fd, name, lstat, parts)` for every entry under the directory `fd` (upload
    temporaries left out), depth first; subdirectories are opened without following links (one
    swapped for a link meanwhile is skipped)."""
    budget.descend(depth)
    with os.scandir(fd) as scan:
        for item in scan:
            budget.tick()
            name = item.name
            if paths.is_temp(name):
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            here = (*parts, name)
            visit(fd, name, st, here)
            if stat.S_ISDIR(st.st_mode):
                try:
                    child = confined.child_dir(fd, name)
                except OSError:
                    continue
                with closing(child):
                    walk(child, here, budget, visit, depth + 1)


def usage(site_fd: int, parts: Parts, budget: Budget) -> UsageResult:
    totals = {"bytes": 0, "files": 0, "dirs": 0}
    linked: set[tuple[int, int]] = set()  # hard-linked files counted once (bounded by the budget)

    def visit(_fd: int, _name: str, st: os.stat_result, _parts: Parts) -> None:
        if stat.S_ISDIR(st.st_mode):
            totals["dirs"] += 1
            return
        if stat.S_ISREG(st.st_mode):
            totals["files"] += 1
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in linked:
                    return
                linked.add((st.st_dev, st.st_ino))
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            totals["bytes"] += st.st_size

    with closing(confined.open_dir(site_fd, parts)) as fd:
        walk(fd, parts, budget, visit)
    return UsageResult(**totals)
