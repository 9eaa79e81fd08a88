"""The reader's side of ``Engine.stream`` and ``Engine.map``: results as they are
committed, then the end."""

from __future__ import annotations

import asyncio
from typing import Generic, Self, TypeVar

#: What a stream yields: a fetch's results, or a map's outcomes.
T = TypeVar("T")


class End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ResultIterator(Generic[T]):
    """The reader's side of a stream."""

    def __init__(self, queue: asyncio.Queue[T | End]) -> None:
        self._queue = queue
        self._ended = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, End):
            self._ended = True
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item
