"""Reading a job back, whatever keeps it: one async :class:`JobReader` for ``shoal status``,
``shoal export`` and ``shoal report``.

A job is kept in one SQLite journal, in the parts' journals of a ``--processes`` job
(:mod:`shoal.store.parts`), or in PostgreSQL (:mod:`shoal.store.postgres.reader`).
:func:`open_reader` opens the right reader for a :class:`JobAddress`; every reader answers
the same four questions (its status, its summary, its records in commit order, and
everything its report shows, read ahead), so each command has one code path. The SQLite
readers are synchronous: :class:`LocalReader` runs them on a thread of their own, never
on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from shoal.store.parts import job_running, open_job
from shoal.store.snapshot import JobStatus, ReportSnapshot, read_ahead
from shoal.store.summary import (
    ErrorGroup,
    HostRow,
    Interval,
    JobSummary,
    RecordTotals,
    TimelineSpan,
    Top,
    TotalsCounter,
    WorkerRow,
)

#: The values a reader reads back (kept in :mod:`shoal.store.summary`), named here too.
__all__ = [
    "ErrorGroup",
    "HostRow",
    "Interval",
    "JobAddress",
    "JobReader",
    "JobStatus",
    "JobSummary",
    "LocalReader",
    "RecordTotals",
    "TimelineSpan",
    "Top",
    "TotalsCounter",
    "WorkerRow",
    "open_reader",
    "parts_title",
]

T = TypeVar("T")
#: Records handed from a journal's thread to the loop at a time.
_BATCH = 2048


class JobReader(Protocol):
    """A job read back, whatever keeps it. Open one with :func:`open_reader`."""

    #: The job as ``shoal status`` names it in its text, and in its JSON's ``job``.
    @property
    def title(self) -> str: ...

    @property
    def key(self) -> str: ...

    async def status(self) -> JobStatus: ...

    async def summary(self) -> JobSummary: ...

    def records(self, *, failed: bool | None = None) -> AsyncGenerator[bytes, None]:
        """The final records in commit order (``failed``: only failures, or successes)."""
        ...

    async def report_source(
        self, *, hosts: int, errors: int, interval: Callable[[TimelineSpan], int]
    ) -> ReportSnapshot: ...


@dataclass(frozen=True, slots=True)
class JobAddress:
    """Where a job is kept: its ``journals`` (one, or a ``--processes`` job's parts), or
    the job ``name`` in the PostgreSQL database at ``dsn``."""

    journals: tuple[str, ...] = ()
    dsn: str | None = None
    name: str | None = None


def parts_title(journals: tuple[str, ...] | list[str]) -> str:
    """How ``shoal status`` names the job kept in ``journals``."""
    if len(journals) == 1:
        return journals[0]
    return f"{journals[0].rsplit('.', 1)[0]} ({len(journals)} parts, one per process)"


class LocalReader:
    """A job kept in SQLite journals (one, or a ``--processes`` job's parts), read on a
    thread of its own (SQLite's connection stays on the thread that made it). Open it
    with :meth:`start`, which says at once what is wrong with the journals."""

    def __init__(self, journals: tuple[str, ...]) -> None:
        self.journals = list(journals)
        self.title = self.key = parts_title(self.journals)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-reader")
        self._reader: Any = None

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _open(self) -> Any:
        return open_job(self.journals)

    async def start(self) -> None:
        self._reader = await self._call(self._open)

    async def status(self) -> JobStatus:
        def read() -> JobStatus:
            running = job_running(self.journals)  # before reading: a run ending is done
            with self._open() as reader:  # (afresh: what the journals hold now)
                return JobStatus(reader.summary(), running)

        return await self._call(read)

    async def summary(self) -> JobSummary:
        return await self._call(lambda: self._reader.summary())

    async def records(self, *, failed: bool | None = None) -> AsyncGenerator[bytes, None]:
        rows: Iterator[bytes] = self._reader.records(failed=failed)
        try:
            while batch := await self._call(_take, rows):
                for record in batch:
                    yield record
        finally:
            await self._call(getattr(rows, "close", lambda: None))

    async def report_source(
        self, *, hosts: int, errors: int, interval: Callable[[TimelineSpan], int]
    ) -> ReportSnapshot:
        def read() -> ReportSnapshot:
            return read_ahead(self._reader, hosts=hosts, errors=errors, interval=interval)

        return await self._call(read)

    async def close(self) -> None:
        if self._reader is not None:
            await self._call(self._reader.__exit__, None, None, None)
            self._reader = None
        self._executor.shutdown(wait=False)


def _take(rows: Iterator[bytes]) -> list[bytes]:
    return [record for _, record in zip(range(_BATCH), rows, strict=False)]


@contextlib.asynccontextmanager
async def open_reader(address: JobAddress) -> AsyncIterator[JobReader]:
    """The reader of the job at ``address``, open for the block."""
    if address.dsn is not None:
        from shoal.store.postgres.reader import PostgresReader

        assert address.name is not None
        async with PostgresReader(address.dsn, address.name) as shared:
            yield shared
        return
    local = LocalReader(address.journals)
    try:
        await local.start()
        yield local
    finally:
        await local.close()
