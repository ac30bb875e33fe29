"""When each name is next due: a heap with one live entry per name (lazy deletion), so an idle
name costs nothing until its time."""

from __future__ import annotations

import heapq


class Due:
    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._at: dict[str, float] = {}  # name -> its live entry's time

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, name: str) -> bool:
        """Due at `at`, unless due sooner already; whether that moved it."""
        if self._at.get(name, float("inf")) <= at:
            return False
        self._at[name] = at
        heapq.heappush(self._heap, (at, name))
        return True

    def pop(self, now: float) -> str | None:
        """A name due by `now` (its entry goes), or None."""
        while self._heap and self._heap[0][0] <= now:
            at, name = heapq.heappop(self._heap)
            if self._at.get(name) == at:
                del self._at[name]
                return name
        return None

    def next_in(self, now: float, default: float) -> float:
        return self._heap[0][0] - now if self._heap else default

    def clear(self) -> None:
        self._heap.clear()
        self._at.clear()
