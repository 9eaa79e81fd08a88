"""A job's report read ahead, and its status: the values every
:class:`~shoal.store.reader.JobReader` hands back, whatever keeps the job (a journal, the
parts of a ``--processes`` job, a shared store), and the :class:`ReportSource` that
``shoal report`` draws its page from."""

from __future__ import annotations

from collections.abc import Callable
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
