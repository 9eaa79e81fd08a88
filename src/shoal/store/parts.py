"""Reading a job run by ``--processes N`` as one job: its parts' journals read together.

Each worker process of such a job keeps a journal of its own, ``JOURNAL.K-of-N`` (and its
part of the output, joined into the output at the end). :func:`find_journals` finds the
journals a command's JOB argument means (the output file, the journal path the job was
given, or any one part's journal: the whole job either way), and :class:`PartsReader`
reads them as :class:`~shoal.store.sqlite.reader.JournalReader` reads one journal: counts summed,
records part after part (the order the joined output has), and the report's groupings
(hosts, error groups, the timeline) merged exactly, in a temporary SQLite database of its
own, so that what grows with the job is never held in memory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from shoal.errors import JournalError
from shoal.store.sqlite.reader import JournalReader, is_running
from shoal.store.summary import (
    ErrorGroup,
    HostRow,
    Interval,
    JobSummary,
    RecordTotals,
    TimelineSpan,
    Top,
    TotalsCounter,
)

#: The journal of an output (``OUTPUT.journal``), as a job run from the CLI keeps it.
JOURNAL_SUFFIX = ".journal"
#: A part's journal: ``JOURNAL.K-of-N``.
_PART = re.compile(r"(?P<base>.+)\.(?P<index>\d+)-of-(?P<count>\d+)")


def part_journal(journal: str, index: int, count: int) -> str:
    """The journal of part ``index`` (from 0) of a job run by ``count`` processes."""
    return f"{journal}.{index + 1}-of-{count}"


def find_journals(job: str) -> list[str]:
    """The journals of the job ``job`` names: one journal, or every part's of a job run by
    ``--processes`` (in part order). ``job`` is the journal, the output file it sits
    beside, or a part's journal. A part missing is an error that names it."""
    if os.path.isfile(job) and (found := _PART.fullmatch(job)) is not None:
        return _parts(found["base"], int(found["count"]))
    candidates = [job] if job.endswith(JOURNAL_SUFFIX) else [job + JOURNAL_SUFFIX, job]
    for base in candidates:
        if os.path.isfile(base):
            return [base]
        counts = {
            int(found["count"])
            for path in glob.glob(glob.escape(base) + ".*-of-*")
            if (found := _PART.fullmatch(path)) is not None and found["base"] == base
        }
        if len(counts) == 1:
            return _parts(base, counts.pop())
        if counts:
            raise JournalError(
                f"{base} has the parts of jobs run with different numbers of processes"
                f" ({', '.join(str(count) for count in sorted(counts))})"
            )
    return [job]  # (the reader says why it is not a journal)


def _parts(base: str, count: int) -> list[str]:
    paths = [part_journal(base, index, count) for index in range(count)]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise JournalError(
            f"{base} is a job run by {count} processes, but its part(s)"
            f" {', '.join(missing)} are missing"
        )
    return paths


def open_job(paths: list[str]) -> JournalReader | PartsReader:
    """A reader of the job kept in ``paths`` (from :func:`find_journals`)."""
    return JournalReader(paths[0]) if len(paths) == 1 else PartsReader(paths)


def job_running(paths: list[str]) -> bool:
    """Whether a shoal runs any part of the job now."""
    return any(is_running(path) for path in paths)


class PartsReader:
    """The parts of a ``--processes`` job read as one journal (a ``ReportSource``)."""

    def __init__(self, paths: list[str]) -> None:
        self.parts: list[JournalReader] = []
        try:
            for path in paths:
                self.parts.append(JournalReader(path))
        except BaseException:
            self._close()
            raise
        found = _PART.fullmatch(paths[0])
        base = paths[0] if found is None else found["base"]
        self.journal = base
        #: Where the job is kept: its journal's path, and how many parts it has.
        self.path = f"{base} ({len(paths)} parts: {os.path.basename(paths[0])} …)"
        self._merged: sqlite3.Connection | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        for part in self.parts:
            part.__exit__(None, None, None)
        if self._merged is not None:
            self._merged.close()

    def summary(self) -> JobSummary:
        summaries = [part.summary() for part in self.parts]
        errors: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        for summary in summaries:
            errors.update(summary.by_error)
            statuses.update(summary.by_status)
        return JobSummary(
            input=summaries[0].input,
            admitted=sum(summary.admitted for summary in summaries),
            ok=sum(summary.ok for summary in summaries),
            failed=sum(summary.failed for summary in summaries),
            # Every part reads the whole input (and keeps its share of it).
            input_done=all(summary.input_done for summary in summaries),
            lines_read=min(summary.lines_read for summary in summaries),
            by_error=dict(sorted(errors.items(), key=lambda item: (-item[1], item[0]))),
            by_status=dict(sorted(statuses.items())),
        )

    def records(self, *, failed: bool | None = None) -> Iterator[bytes]:
        """The final records, part after part, each in commit order."""
        for part in self.parts:
            yield from part.records(failed=failed)

    def settings(self) -> dict[str, Any] | None:
        """The first part's latest settings, with the job's output (not the part's)."""
        settings = self.parts[0].settings()
        if settings is not None and isinstance(output := settings.get("output"), str):
            settings["output"] = re.sub(r"\.part-\d+-of-\d+$", "", output)
        return settings

    def positions(self) -> dict[str, int]:
        """The outputs' sizes: the parts' summed (the joined output holds them all)."""
        summed: Counter[str] = Counter()
        for part in self.parts:
            summed.update(part.positions())
        return dict(sorted(summed.items()))

    def totals(self) -> RecordTotals:
        counter = TotalsCounter()
        for part in self.parts:
            counter.add(part.records())
        return counter.totals()

    def timeline_span(self) -> TimelineSpan | None:
        spans = [span for part in self.parts if (span := part.timeline_span()) is not None]
        if not spans:
            return None
        source = "journal" if all(span.source == "journal" for span in spans) else "records"
        return TimelineSpan(
            source,
            min(span.first for span in spans),
            max(span.last for span in spans),
            sum(span.ok for span in spans),
            sum(span.failed for span in spans),
        )

    def timeline(self, span: TimelineSpan, seconds: int) -> list[Interval]:
        """Each part's intervals, from the same start, summed interval by interval."""
        sums: dict[int, list[int]] = {}
        for part in self.parts:
            for interval in part.timeline(span, seconds):
                row = sums.setdefault(interval.start, [0, 0, 0, 0])
                row[0] += interval.ok
                row[1] += interval.failed
                row[2] += interval.bytes
                row[3] += interval.attempts
        return [Interval(start, seconds, *sums[start]) for start in sorted(sums)]

    def hosts(self, limit: int) -> Top[HostRow]:
        """The hosts with the most final records over every part (one host's requests may
        be spread over several)."""
        merged = self._merge(
            "hosts",
            "host TEXT, n INTEGER, failed INTEGER, bytes INTEGER, ms REAL, timed INTEGER",
            (part.host_sums() for part in self.parts),
        )
        rows = merged.execute(
            "SELECT host, SUM(n) AS total, SUM(failed), SUM(bytes), SUM(ms) / SUM(timed),"
            " COUNT(*) OVER () FROM hosts GROUP BY host ORDER BY total DESC, host LIMIT ?",
            (limit,),
        ).fetchall()
        return Top(
            [HostRow(host, n, failed, size, mean) for host, n, failed, size, mean, _ in rows],
            rows[0][-1] if rows else 0,
        )

    def error_groups(self, limit: int) -> Top[ErrorGroup]:
        merged = self._merge(
            "errors",
            "kind TEXT, message TEXT, n INTEGER, url TEXT",
            (part.error_sums() for part in self.parts),
        )
        rows = merged.execute(
            "SELECT kind, message, SUM(n) AS total, MIN(url), COUNT(*) OVER () FROM errors"
            " GROUP BY kind, message ORDER BY total DESC, kind, message LIMIT ?",
            (limit,),
        ).fetchall()
        return Top(
            [
                ErrorGroup(str(kind), str(message or ""), n, str(url or ""))
                for kind, message, n, url, _ in rows
            ],
            rows[0][-1] if rows else 0,
        )

    def _merge(
        self, table: str, columns: str, parts: Iterator[Iterator[tuple[Any, ...]]]
    ) -> sqlite3.Connection:
        """A table of every part's rows of one grouping, in a temporary database (on disk
        when it grows: SQLite's own temporary file)."""
        if self._merged is None:
            self._merged = sqlite3.connect("")
        merged = self._merged
        try:
            merged.execute(f"DROP TABLE IF EXISTS {table}")
            merged.execute(f"CREATE TABLE {table} ({columns})")
            marks = ", ".join("?" * (columns.count(",") + 1))
            for rows in parts:
                merged.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                merged.rollback()
            raise JournalError(f"cannot merge the parts of {self.journal}: {exc}") from exc
        return merged
