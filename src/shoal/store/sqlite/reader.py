"""Reading a job's SQLite journal without touching it: for ``shoal status``, ``shoal export`` and
``shoal report``.

The journal is opened read-only (SQLite's ``mode=ro``), so it can be read while the job
runs; a running job's later commits simply are not seen. Every query streams or aggregates
in SQLite: a journal of millions of records is never held in memory, and whatever grows
with the job (hosts, error messages) is grouped by SQLite and only the top rows come back.
Ties are broken by name, so the same journal always reads back the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import orjson

from shoal.errors import JournalError
from shoal.store.sqlite.schema import SCHEMA_VERSION
from shoal.store.store import ARCHIVE_POSITIONS
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

_BATCH = 2048


_TEXT = "CAST(record AS TEXT)"


def is_running(path: str) -> bool:
    """Whether a shoal holds the journal's lock now (runs its job): a look that takes the
    lock shared for an instant (a starting run retries past it)."""
    try:
        fd = os.open(path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # never run, or its folder is unreadable: nothing runs it from here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock too
    return False


class JournalReader:
    """A read-only view of a journal file. Use it as a context manager."""

    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise JournalError(f"{path} is not a journal file")
        self.path = path
        try:
            uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23")
            self._db = sqlite3.connect(uri + "?mode=ro", uri=True)
            meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise JournalError(f"{path} is not a usable shoal journal: {exc}") from exc
        if int(meta.get("version", 0)) != SCHEMA_VERSION:
            self._db.close()
            raise JournalError(f"{path} was written by another version of shoal")
        self._meta = meta
        self._db.create_function("shoal_host", 1, _host, deterministic=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._db.close()

    def summary(self) -> JobSummary:
        meta = self._meta
        try:
            errors = self._db.execute(
                "SELECT json_extract(CAST(record AS TEXT), '$.error.kind'), COUNT(*)"
                " FROM records WHERE failed GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
            statuses = self._db.execute(
                "SELECT json_extract(CAST(record AS TEXT), '$.status') / 100, COUNT(*)"
                " FROM records GROUP BY 1 ORDER BY 1"
            ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {self.path}: {exc}") from exc
        return JobSummary(
            input=str(meta.get("input", "")),
            admitted=int(meta.get("admitted", 0)),
            ok=int(meta.get("ok", 0)),
            failed=int(meta.get("failed", 0)),
            input_done=bool(int(meta.get("input_done", 0))),
            lines_read=int(meta.get("input_items", 0)),
            by_error={str(kind): count for kind, count in errors if kind is not None},
            by_status={f"{int(c)}xx": count for c, count in statuses if c is not None},
        )

    def records(self, *, failed: bool | None = None) -> Iterator[bytes]:
        """The final records in commit order (``failed``: only failures, or only successes)."""
        where = "" if failed is None else f" AND failed = {int(failed)}"
        after = 0
        while True:
            try:
                rows = self._db.execute(
                    f"SELECT done_seq, record FROM records WHERE done_seq > ?{where}"
                    " ORDER BY done_seq LIMIT ?",
                    (after, _BATCH),
                ).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"cannot read journal {self.path}: {exc}") from exc
            if not rows:
                return
            after = rows[-1][0]
            for _, record in rows:
                yield bytes(record)

    # -- for the report ----------------------------------------------------------------------

    def _query(self, query: str, parameters: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(query, parameters)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {self.path}: {exc}") from exc

    def _rows(self, query: str, parameters: tuple[Any, ...] = ()) -> Iterator[Any]:
        """A query's rows, streamed (a journal may hold millions)."""
        cursor = self._query(query, parameters)
        try:
            while rows := cursor.fetchmany(_BATCH):
                yield from rows
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {self.path}: {exc}") from exc
        finally:
            cursor.close()

    def settings(self) -> dict[str, Any] | None:
        """The latest run's settings (``Store.describe``); ``None`` when no run kept them."""
        raw = self._meta.get("settings")
        return None if raw is None else dict(orjson.loads(raw))

    def positions(self) -> dict[str, int]:
        """The outputs' sizes as the journal's sink mark last recorded them (the web
        archive's own end left out: :attr:`RecordTotals.warc_files` says it per file)."""
        raw = self._meta.get("mark_positions")
        positions = {} if raw is None else orjson.loads(raw)
        return {
            str(name): int(size)
            for name, size in sorted(positions.items())
            if not str(name).startswith(ARCHIVE_POSITIONS)
        }

    def totals(self) -> RecordTotals:
        """Status counts, latency histograms, bytes, attempts and the outputs' shares, over
        every final record in one streaming pass."""
        counter = TotalsCounter()
        counter.add(raw for (raw,) in self._rows("SELECT record FROM records"))
        return counter.totals()

    def timeline_span(self) -> TimelineSpan | None:
        """Where the job's timeline lies; ``None`` when no record has a time."""
        table = self._query(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'timeline'"
        ).fetchone()[0]
        if table:
            first, last, ok, failed = self._query(
                "SELECT MIN(second), MAX(second), COALESCE(SUM(ok), 0), COALESCE(SUM(failed), 0)"
                " FROM timeline"
            ).fetchone()
            final = int(self._meta.get("ok", 0)) + int(self._meta.get("failed", 0))
            if first is not None and ok + failed >= final:
                return TimelineSpan("journal", first, last, ok, failed)
        first, last, ok, failed = self._query(
            f"SELECT MIN(s), MAX(s), COALESCE(SUM(1 - failed), 0), COALESCE(SUM(failed), 0)"
            f" FROM (SELECT {_ENDED} AS s, failed FROM records) WHERE s IS NOT NULL"
        ).fetchone()
        return None if first is None else TimelineSpan("records", first, last, ok, failed)

    def timeline(self, span: TimelineSpan, seconds: int) -> list[Interval]:
        """The timeline in intervals of ``seconds`` from ``span.first``, in order; an
        interval in which nothing was committed is left out."""
        if span.source == "journal":
            query = (
                "SELECT (second - ?1) / ?2, SUM(ok), SUM(failed), SUM(bytes), SUM(attempts)"
                " FROM timeline GROUP BY 1 ORDER BY 1"
            )
        else:
            query = (
                "SELECT (s - ?1) / ?2, SUM(1 - failed), SUM(failed), SUM(b), SUM(a) FROM"
                f" (SELECT {_ENDED} AS s, failed, json_extract({_TEXT}, '$.bytes') AS b,"
                f" json_extract({_TEXT}, '$.attempts') AS a FROM records)"
                " WHERE s IS NOT NULL GROUP BY 1 ORDER BY 1"
            )
        return [
            Interval(span.first + index * seconds, seconds, ok, failed, size or 0, tries or 0)
            for index, ok, failed, size, tries in self._rows(query, (span.first, seconds))
        ]

    def hosts(self, limit: int) -> Top[HostRow]:
        """The hosts with the most final records (their names as the requests gave them),
        or for a map the groups."""
        rows = self._query(
            "SELECT host, COUNT(*) AS n, SUM(failed), SUM(COALESCE(b, 0)), AVG(ms),"
            " COUNT(*) OVER () FROM (SELECT COALESCE(shoal_host(json_extract(t, '$.url')),"
            " json_extract(t, '$.group')) AS host,"
            " failed, json_extract(t, '$.bytes') AS b, json_extract(t, '$.elapsed_ms') AS ms"
            f" FROM (SELECT {_TEXT} AS t, failed FROM records))"
            " GROUP BY host ORDER BY n DESC, host LIMIT ?",
            (limit,),
        ).fetchall()
        return Top(
            [HostRow(host, n, failed, size, mean) for host, n, failed, size, mean, _ in rows],
            rows[0][-1] if rows else 0,
        )

    def host_sums(self) -> Iterator[tuple[Any, ...]]:
        """Every host's (or group's) sums, streamed, to merge with other journals': its
        name, final records, failures, bytes, and the sum and count of its latencies."""
        return self._rows(
            "SELECT host, COUNT(*), SUM(failed), SUM(COALESCE(b, 0)), SUM(ms), COUNT(ms) FROM"
            " (SELECT COALESCE(shoal_host(json_extract(t, '$.url')),"
            " json_extract(t, '$.group')) AS host,"
            " failed, json_extract(t, '$.bytes') AS b, json_extract(t, '$.elapsed_ms') AS ms"
            f" FROM (SELECT {_TEXT} AS t, failed FROM records)) GROUP BY host"
        )

    def error_sums(self) -> Iterator[tuple[Any, ...]]:
        """Every group of final failures (kind, message, count, first URL), streamed."""
        return self._rows(
            "SELECT kind, message, COUNT(*), MIN(url) FROM"
            " (SELECT json_extract(t, '$.error.kind') AS kind,"
            " json_extract(t, '$.error.message') AS message,"
            " COALESCE(json_extract(t, '$.url'), json_extract(t, '$.key')) AS url"
            f" FROM (SELECT {_TEXT} AS t FROM records WHERE failed)) GROUP BY kind, message"
        )

    def error_groups(self, limit: int) -> Top[ErrorGroup]:
        """Final failures grouped by kind and message, the largest groups first."""
        rows = self._query(
            "SELECT kind, message, COUNT(*) AS n, MIN(url), COUNT(*) OVER () FROM"
            " (SELECT json_extract(t, '$.error.kind') AS kind,"
            " json_extract(t, '$.error.message') AS message,"
            " COALESCE(json_extract(t, '$.url'), json_extract(t, '$.key')) AS url"
            f" FROM (SELECT {_TEXT} AS t FROM records WHERE failed))"
            " GROUP BY kind, message ORDER BY n DESC, kind, message LIMIT ?",
            (limit,),
        ).fetchall()
        return Top(
            [
                ErrorGroup(str(kind), str(message or ""), n, str(url or ""))
                for kind, message, n, url, _ in rows
            ],
            rows[0][-1] if rows else 0,
        )


#: The Unix second a record's last attempt ended, from its ISO ``started_at`` (or NULL).
_ENDED = (
    f"CAST((julianday(json_extract({_TEXT}, '$.started_at')) - 2440587.5) * 86400.0"
    f" + COALESCE(json_extract({_TEXT}, '$.elapsed_ms'), 0) / 1000.0 AS INTEGER)"
)


def _host(url: object) -> str | None:
    """A URL's host name, lower-cased (``None`` for text that names none).

    Called by SQLite once a record, so it only splits strings (a third of the time
    ``urlsplit`` takes): the authority after ``://``, without user info and port.
    """
    if not isinstance(url, str):
        return None
    _, separator, rest = url.partition("://")
    if not separator:
        return None
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    if authority.startswith("["):  # an IPv6 address
        host = authority[1:].partition("]")[0]
    else:
        host = authority.partition(":")[0]
    return host.lower() or None
