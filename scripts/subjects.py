"""Fail when a commit subject is longer than 72 characters (`make lint`).

Detail belongs in the body, as in the kernel's and CPython's history. Commits up to BASELINE are
history this rule came after and cannot be rewritten; every later commit on HEAD's line is checked.
A checkout without git history (an unpacked archive) has nothing to check.
"""

from __future__ import annotations

import subprocess
import sys

LIMIT = 72
BASELINE = "1cd933f"  # the last commit made before the rule


def subjects(base: str) -> list[tuple[str, str]]:
    """(short hash, subject) of every commit reachable from HEAD but not from `base`."""
    out = subprocess.run(
        ["git", "log", "--format=%h %s", f"{base}..HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [tuple(line.split(" ", 1)) for line in out.splitlines() if line]  # type: ignore[misc]


def main() -> int:
    probe = subprocess.run(["git", "cat-file", "-e", f"{BASELINE}^{{commit}}"], capture_output=True)
    if probe.returncode != 0:
        return 0
    long = [(h, s) for h, s in subjects(BASELINE) if len(s) > LIMIT]
    for commit, subject in long:
        print(f"{commit}: subject is {len(subject)} characters (limit {LIMIT}): {subject}")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
