"""The console's reply within its bounds, and its cells as JSON has them (no driver: each engine
hands over its cursor's fetch)."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from orchestrator_contract.databases import Cell, QueryResult

# Quoted strings, quoted names and comments: a `;` inside one does not end a statement.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"]|\"\")*\"|`(?:[^`]|``)*`|--[^\n]*|#[^\n]*|/\*.*?\*/", re.S)


def cell(value: Any) -> Cell:
    """A value as the reply carries it: JSON's own types as they are, everything else as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return str(value)


class RowBudget:
    """Rows are taken until `max_rows` of them or `max_bytes` of their JSON; `spent` then says
    that one more was offered and left out."""

    def __init__(self, max_rows: int, max_bytes: int) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.rows = 0
        self.bytes = 0
        self.spent = False

    def take(self, row: list[Cell]) -> bool:
        size = len(json.dumps(row, ensure_ascii=False).encode()) + 1
        if self.rows >= self.max_rows or self.bytes + size > self.max_bytes:
            self.spent = True
            return False
        self.rows += 1
        self.bytes += size
        return True


def mentions_more_statements(sql: str, syntax_error: bool) -> bool:
    """Whether a statement the server found malformed is in fact several (a `;` with more after
    it, outside quotes and comments): the refusal gets its own code."""
    if not syntax_error:
        return False
    bare = _QUOTED.sub(" ", sql).strip().rstrip(";").strip()
    return ";" in bare


async def read_rows(
    columns: list[str], fetch: Callable[[int], Awaitable[Sequence[Sequence[Any]]]], max_rows: int, max_bytes: int
) -> QueryResult:
    """The reply to a statement that returns rows: batches of `fetch(n)` (a server-side cursor's),
    until there are none left or `max_rows` rows or `max_bytes` of their JSON are taken."""
    budget = RowBudget(max_rows, max_bytes)
    rows: list[list[Cell]] = []
    while not budget.spent:
        batch = await fetch(min(100, max_rows + 1))
        if not batch:
            break
        for record in batch:
            row = [cell(value) for value in record]
            if not budget.take(row):
                break
            rows.append(row)
    status = f"{len(rows)} rows" + (" (more left out)" if budget.spent else "")
    return QueryResult(columns=columns, rows=rows, truncated=budget.spent, status=status)
