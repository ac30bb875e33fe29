"""`make lint`'s size check: no module over 400 lines, no function over 80, in the code we ship and
measure with (the server, the contract, the client, the benchmark and its harness).

A generated table may be longer: mark its `def` line with `# generated table`.

    python scripts/sizes.py [PATH...]      (default: orchestrator contract clients bench)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ("orchestrator", "contract", "clients", "bench", "harness")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
EXEMPT = "# generated table"


def oversized(path: Path) -> Iterator[str]:
    text = path.read_text()
    lines = text.splitlines()
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if len(lines) > MAX_MODULE_LINES:
        yield f"{where}: {len(lines)} lines (at most {MAX_MODULE_LINES})"
    for node in ast.walk(ast.parse(text, str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.end_lineno is None:
            continue
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES and EXEMPT not in lines[node.lineno - 1]:
            yield f"{where}:{node.lineno}: {node.name} is {length} lines (at most {MAX_FUNCTION_LINES})"


def main(args: list[str]) -> int:
    roots = [Path(a) for a in args] or [ROOT / name for name in DEFAULT if (ROOT / name).exists()]
    found = [
        problem
        for root in roots
        for path in sorted(root.rglob("*.py") if root.is_dir() else [root])
        if ".venv" not in path.parts
        for problem in oversized(path)
    ]
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
