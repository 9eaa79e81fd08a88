"""``Engine.stream`` and ``Engine.map`` for their reader: results as they are committed,
then the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Self, TypeVar

from shoal.engine.flow import Deliver
from shoal.outcome import Finished

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


@contextlib.asynccontextmanager
async def stream(
    kind: type[T],
    run_job: Callable[[Deliver], Awaitable[None]],
    *,
    size: int,
    abort: Callable[[], None],
) -> AsyncIterator[AsyncIterator[T]]:
    """Run ``run_job`` beside the reader, handing it each committed result (at most
    ``size`` waiting); leaving early calls ``abort`` and waits for the job's end."""
    queue: asyncio.Queue[T | End] = asyncio.Queue(maxsize=size)

    async def deliver(result: Finished) -> None:
        assert isinstance(result, kind)
        await queue.put(result)

    async def run() -> None:
        error: BaseException | None = None
        try:
            await run_job(deliver)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the reader below
            error = exc
        await queue.put(End(error))

    runner = asyncio.create_task(run())
    try:
        yield ResultIterator(queue)
    finally:
        if not runner.done():
            abort()
            runner.cancel()
        # Wait without swallowing a cancellation of our own caller; the run's errors
        # already reached the reader through the queue.
        await asyncio.wait([runner])
        if not runner.cancelled():
            runner.exception()
