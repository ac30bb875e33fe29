"""Plain-text tables for operators' terminals, one way for every command."""

from __future__ import annotations

from collections.abc import Sequence


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    table = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table)


def escaped(text: str) -> str:
    """Control and format characters shown as escapes: text that came from outside (a publisher's
    message id, a routing key) must not move the cursor or forge rows on an operator's terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def size(count: int) -> str:
    """Bytes in the units the settings use (Ki, Mi, Gi), one decimal past a unit."""
    for unit, scale in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)
