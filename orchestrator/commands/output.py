"""How every command talks to an operator, one way for all: its report on stdout (a table, or
JSON with `-o json`), questions and progress on the terminal only, errors on stderr, and exit
codes a script can branch on."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

OK = 0
# Some of the work failed (a site that did not move off a node).
FAILED = 1
# `status` and `reconcile --dry-run` found drift (as `git diff --exit-code` finds a difference).
DRIFT = 1
# A usage error or a refusal (no confirmation); argparse's own usage errors exit 2 too.
REFUSED = 2
# The broker or Docker cannot be reached (sysexits.h's EX_UNAVAILABLE).
UNAVAILABLE = getattr(os, "EX_UNAVAILABLE", 69)
# This node cannot keep a promise of docs/security.md: `run` does not start (sysexits.h's EX_CONFIG).
PROMISE_NOT_KEPT = getattr(os, "EX_CONFIG", 78)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def say(message: str) -> None:
    """A line for the operator that is not the command's report (its report goes to stdout)."""
    print(message, file=sys.stderr)


def confirmed(question: str, word: str) -> bool:
    """An operator typed `word` at a terminal; without a terminal to ask on, no."""
    if not sys.stdin.isatty():
        say(f"refusing to {word} without --yes (no terminal to ask)")
        return False
    if input(question).strip() != word:
        say(f"nothing done: {word} was not confirmed")
        return False
    return True


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal (a script or a log file
    gets the report alone) and only for work of more than a handful of steps."""

    def __init__(self, out: TextIO | None = None, width: int = 30) -> None:
        self.out = sys.stderr if out is None else out
        self.width = width
        self.count = 0
        self.started = time.monotonic()
        self.shown = False

    def step(self, total: int) -> None:
        self.count += 1
        if total < 20 or not self.out.isatty() or not (self.count % 10 == 0 or self.count == total):
            return
        filled = self.width * min(self.count, total) // total
        rate = self.count / max(time.monotonic() - self.started, 1e-6)
        self.out.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.count}/{total} ({rate:.0f}/s)")
        self.out.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.out.write("\n")
