"""The scheduler's timers: one heap of due times and a single loop timer for the earliest.

A host that must wait (its rate, its delay, a Retry-After pause), an endpoint parked after
connection failures and a job waiting to be retried all wait here; waiting costs nothing
until they are due, however many there are.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

_T = TypeVar("_T")

#: A loop timer may fire this early; anything due within it counts as due.
RESOLUTION_S = 0.001


class Timers(Generic[_T]):
    """Items due at loop times; ``due(item)`` is called for each once its time comes, in
    due order (and in the order they were pushed for equal times)."""

    def __init__(self, due: Callable[[_T], None]) -> None:
        self._due = due
        self._heap: list[tuple[float, int, _T]] = []
        self._order = itertools.count()
        self._handle: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, item: _T) -> None:
        """Call ``due(item)`` at loop time ``at``."""
        heapq.heappush(self._heap, (at, next(self._order), item))
        if self._heap[0][2] is item:
            self._arm()

    def remove(self, match: Callable[[_T], bool]) -> list[_T]:
        """Take out the items ``match`` picks (they will not come due), in heap order."""
        if not any(match(item) for _, _, item in self._heap):
            return []
        removed, kept = [], []
        for entry in self._heap:
            if match(entry[2]):
                removed.append(entry[2])
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._heap = kept
        self._cancel()
        if kept:
            self._arm()
        return removed

    def clear(self) -> None:
        """Forget every item."""
        self._cancel()
        self._heap.clear()

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        self._handle = loop.call_at(self._heap[0][0], self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = asyncio.get_running_loop().time()
        while self._heap and self._heap[0][0] <= now + RESOLUTION_S:
            _, _, item = heapq.heappop(self._heap)
            self._due(item)
        if self._heap:
            self._arm()
