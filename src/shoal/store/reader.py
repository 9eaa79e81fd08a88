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
from typing import Any, Protocol, TypeVar, runtime_checkable

from shoal.store.summary import (
    ErrorGroup,
    HostRow,
    Interval,
    JobSummary,
    RecordTotals,
    TimelineSpan,
    Top,
    WorkerRow,
)

T = TypeVar("T")
#: Records handed from a journal's thread to the loop at a time.
_BATCH = 2048


class ReportSource(Protocol):
    """What ``render_report`` reads of a job (a ``JournalReader`` is one as it is)."""

    #: Where the job is kept: its journal's path (a shared job's: its store's URL).
    @property
    def path(self) -> str: ...

    def summary(self) -> JobSummary: ...

    def totals(self) -> RecordTotals: ...

    def timeline_span(self) -> TimelineSpan | None: ...

    def timeline(self, span: TimelineSpan, seconds: int) -> list[Interval]: ...

    def hosts(self, limit: int) -> Top[HostRow]: ...

    def error_groups(self, limit: int) -> Top[ErrorGroup]: ...

    def settings(self) -> dict[str, Any] | None: ...

    def positions(self) -> dict[str, int]: ...


@runtime_checkable
class SharedSource(ReportSource, Protocol):
    """A job kept in a shared store (``path``: the store's URL, no password), worked on by
    any number of workers: the page names the job and has a section on its workers."""

    @property
    def name(self) -> str: ...

    def workers(self) -> list[WorkerRow]: ...


class ReportSnapshot:
    """A job as ``shoal report`` draws it, read ahead (by :func:`read_ahead`, or a shared
    store in one snapshot of its database): what the page asks of a
    :class:`ReportSource`, answered from memory."""

    def __init__(
        self,
        *,
        path: str,
        summary: JobSummary,
        totals: RecordTotals,
        span: TimelineSpan | None,
        seconds: int,
        timeline: list[Interval],
        hosts: tuple[int, Top[HostRow]],
        errors: tuple[int, Top[ErrorGroup]],
        settings: dict[str, Any] | None,
        positions: dict[str, int],
    ) -> None:
        #: Where the job is kept (a store's URL: without its password).
        self.path = path
        self._summary = summary
        self._totals = totals
        self._span = span
        self._seconds = seconds
        self._timeline = timeline
        self._hosts = hosts
        self._errors = errors
        self._settings = settings
        self._positions = positions

    def summary(self) -> JobSummary:
        return self._summary

    def totals(self) -> RecordTotals:
        return self._totals

    def timeline_span(self) -> TimelineSpan | None:
        return self._span

    def timeline(self, span: TimelineSpan, seconds: int) -> list[Interval]:
        if (span, seconds) != (self._span, self._seconds):
            raise ValueError(f"the timeline was read in {self._seconds} s intervals only")
        return list(self._timeline)

    def hosts(self, limit: int) -> Top[HostRow]:
        return _first(self._hosts, limit)

    def error_groups(self, limit: int) -> Top[ErrorGroup]:
        return _first(self._errors, limit)

    def settings(self) -> dict[str, Any] | None:
        return self._settings

    def positions(self) -> dict[str, int]:
        return dict(self._positions)


class SharedSnapshot(ReportSnapshot):
    """A shared job read ahead: a :class:`SharedSource`, with the job's ``name`` and its
    workers. A shared job has no sink mark: its outputs' positions are none."""

    def __init__(self, *, name: str, workers: list[WorkerRow], **read: Any) -> None:
        super().__init__(positions={}, **read)
        self.name = name
        self._workers = workers

    def workers(self) -> list[WorkerRow]:
        return list(self._workers)


def _first(read: tuple[int, Top[T]], limit: int) -> Top[T]:
    """The first ``limit`` rows of a grouping read ahead with ``read[0]`` rows at most."""
    most, top = read
    if limit > most and top.groups > len(top.rows):
        raise ValueError(f"only the first {most} rows were read")
    return Top(top.rows[:limit], top.groups)


def read_ahead(
    source: ReportSource, *, hosts: int, errors: int, interval: Callable[[TimelineSpan], int]
) -> ReportSnapshot:
    """Everything the report shows of a journal's job (``source``), read now: the top
    ``hosts`` hosts and ``errors`` error groups, and the timeline in intervals of
    ``interval(span)`` seconds."""
    span = source.timeline_span()
    seconds = 0 if span is None else interval(span)
    return ReportSnapshot(
        path=source.path,
        summary=source.summary(),
        totals=source.totals(),
        span=span,
        seconds=seconds,
        timeline=[] if span is None else source.timeline(span, seconds),
        hosts=(hosts, source.hosts(hosts)),
        errors=(errors, source.error_groups(errors)),
        settings=source.settings(),
        positions=source.positions(),
    )


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's status now: its summary, whether any shoal works on it, and for a shared
    job its ``workers`` running (``None``: a journal's job, run by one shoal at a time)
    and whether it is paused."""

    summary: JobSummary
    running: bool
    workers: int | None = None
    paused: bool = False


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
        from shoal.store.parts import open_job

        return open_job(self.journals)

    async def start(self) -> None:
        self._reader = await self._call(self._open)

    async def status(self) -> JobStatus:
        from shoal.store.parts import job_running

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
