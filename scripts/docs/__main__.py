"""The generated documentation pages, written from their one source each, and the checks that keep
the docs true to the code.

- docs/configuration.md from `Settings` (configuration.py);
- docs/benchmarks.md from the newest run of each section in bench/results/ (benchmarks.py);
- with `--check`, also: every link, anchor, path, dotted name and command the README and the docs
  mention exists, and every error code is explained (checks.py).

    python scripts/docs           # write both pages (`make docs`)
    python scripts/docs --check   # exit 1 on a stale page or a reference to nothing (`make lint`)
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import benchmarks_page
from checks import stale_commands, stale_references, undocumented_codes
from configuration import configuration_page
from page import ROOT

PAGES = {"configuration": ROOT / "docs" / "configuration.md", "benchmarks": ROOT / "docs" / "benchmarks.md"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the docs are not current")
    check = parser.parse_args().check
    configuration, undocumented = configuration_page()
    pages = {"configuration": configuration, "benchmarks": benchmarks_page()}
    problems = [f"orchestrator/config/: {name} has no comment above it" for name in undocumented]
    if check:
        written = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        problems += [*stale_references(written), *stale_commands(written), *undocumented_codes()]
    for name, text in pages.items():
        path = PAGES[name]
        if not check:
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            problems.append(f"{path.relative_to(ROOT)} is not current: run `make docs`")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
