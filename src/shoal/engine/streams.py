"""The reader's side of ``Engine.stream``: results as they are committed, then the end."""

from __future__ import annotations

import asyncio
from typing import Self

from shoal.result import Result


class End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ResultIterator:
    """The reader's side of a stream."""

    def __init__(self, queue: asyncio.Queue[Result | End]) -> None:
        self._queue = queue
        self._ended = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Result:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, End):
            self._ended = True
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item
