"""All of a job's outputs, written together on one thread, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from shoal.errors import OutputError
from shoal.sinks.sink import Sink
from shoal.store.store import Record, SinkMark


class Outputs:
    """Writes committed records to every sink and keeps the :class:`SinkMark` they reach."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self._sinks = list(sinks)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-outputs")
        self.mark = SinkMark()

    async def open(self, mark: SinkMark, resumed: bool) -> SinkMark:
        """Open every sink at ``mark``; the returned mark is where records must resume.

        When a sink holds less than the mark, every sink restarts empty and the returned
        mark is zero, so the whole job's records are written again.
        """
        loop = asyncio.get_running_loop()
        self.mark = await loop.run_in_executor(self._executor, self._open, mark, resumed)
        return self.mark

    def _open(self, mark: SinkMark, resumed: bool) -> SinkMark:
        try:
            intact = all(
                [
                    sink.open(mark.positions.get(sink.name, 0) if resumed else None)
                    for sink in self._sinks
                ]
            )
            if intact:
                return mark
            for sink in self._sinks:
                sink.close()
                sink.open(None)
            return SinkMark(0, {sink.name: 0 for sink in self._sinks})
        except OSError as exc:
            raise OutputError(f"cannot open output: {exc}") from exc

    async def write(self, records: list[Record]) -> SinkMark:
        """Append ``records`` (in commit order) to every sink."""
        if not records:
            return self.mark
        loop = asyncio.get_running_loop()
        self.mark = await loop.run_in_executor(self._executor, self._write, records)
        return self.mark

    def _write(self, records: list[Record]) -> SinkMark:
        lines = [line for _, line in records]
        try:
            for sink in self._sinks:
                sink.write(lines)
        except OSError as exc:
            raise OutputError(f"cannot write output: {exc.strerror or exc}") from exc
        return SinkMark(records[-1][0], {sink.name: sink.position() for sink in self._sinks})

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close)
        finally:
            self._executor.shutdown(wait=False)

    def _close(self) -> None:
        for sink in self._sinks:
            with contextlib.suppress(OSError):
                sink.close()
