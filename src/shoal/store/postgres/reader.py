"""Reading a job kept in PostgreSQL without working on it: for ``shoal status``,
``shoal export``, ``shoal report``, ``shoal worker`` (the job's options) and a finished
job's ``-o``.

Read while workers run, it sees what they have committed so far. Records stream in commit
order, a batch at a time; the summary's groupings are computed by the database, and so are
the report's (hosts, error groups, the timeline), as
:class:`~shoal.store.sqlite.reader.JournalReader` has SQLite compute them, with the same
ties broken the same way (by the bytes of the text).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self

import orjson

from shoal.errors import JournalError
from shoal.store.dsn import shown_dsn
from shoal.store.postgres.connection import require_asyncpg
from shoal.store.postgres.schema import SCHEMA_VERSION, migrate
from shoal.store.snapshot import JobStatus, SharedSnapshot
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

_BATCH = 2048


def host_sql(url: str) -> str:
    """SQL for the host name of the URL that the SQL text expression ``url`` gives, as
    :func:`shoal.store.sqlite.reader._host` finds it: the authority after the first ``://`` (up to
    ``/``, ``?`` or ``#``), without the user info (up to its last ``@``) and the port, an
    IPv6 address without its brackets, lower-cased; NULL for text that names none."""
    authority = f"regexp_replace(substring({url} from '://([^/?#]*)'), '^.*@', '')"
    bracketed = f"substring({authority} from '^\\[([^]]*)')"
    plain = f"substring({authority} from '^[^:]*')"
    return f"NULLIF(lower(COALESCE({bracketed}, {plain})), '')"


_URL_HOST = host_sql("t ->> 'url'")
#: Each final record of the job (``$1``) as JSON, with whether it failed.
_RECORDS = (
    "SELECT convert_from(record, 'UTF8')::jsonb AS t, failed FROM shoal_records WHERE job_id = $1"
)


class MissingJob(JournalError):
    """The database holds no job of that name (yet)."""


class PostgresReader:
    """One job of the database at ``dsn``, by name; use it as an async context manager.
    A :class:`~shoal.store.reader.JobReader`."""

    def __init__(self, dsn: str, job: str, *, patience_s: float = 0.0) -> None:
        require_asyncpg()
        self.dsn = dsn
        self.name = job
        #: How long to keep trying to connect (a database restarting) before giving up.
        self.patience_s = patience_s
        self._connection: Any = None
        self._job_id = 0

    @property
    def title(self) -> str:
        """The job as ``shoal status`` names it: its name and its store's URL."""
        return f"{self.name} ({shown_dsn(self.dsn)})"

    @property
    def key(self) -> str:
        return self.name

    async def status(self) -> JobStatus:
        """The job's summary, its workers running now, and whether it is paused."""
        summary, workers, paused = await self.summary(), await self.workers(), await self.paused()
        return JobStatus(summary, workers > 0, workers, paused)

    async def __aenter__(self) -> Self:
        import asyncpg

        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                self._connection = await asyncpg.connect(self.dsn, timeout=15)
                break
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError):
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    continue
                raise JournalError(
                    f"cannot reach the job's database {shown_dsn(self.dsn)}"
                ) from None
            except (ValueError, asyncpg.PostgresError) as exc:
                raise JournalError(
                    f"cannot open the job's database {shown_dsn(self.dsn)}: {exc}"
                ) from exc
        try:
            exists = await self._connection.fetchval("SELECT to_regclass('shoal_jobs') IS NOT NULL")
            job_id = None
            if exists:
                await self._up_to_date()
                job_id = await self._connection.fetchval(
                    "SELECT id FROM shoal_jobs WHERE name = $1", self.name
                )
            if job_id is None:
                raise MissingJob(f"the store has no job {self.name!r}")
        except BaseException:
            await self._connection.close()
            raise
        self._job_id = job_id
        return self

    async def _up_to_date(self) -> None:
        """Bring a schema an older shoal made up to this one's (what the workers of this
        shoal would do), or say why it cannot be read."""
        import asyncpg

        connection = self._connection
        version = await connection.fetchval("SELECT max(version) FROM shoal_schema")
        if version == SCHEMA_VERSION:
            return
        try:
            async with connection.transaction():
                await migrate(connection)
        except asyncpg.PostgresError as exc:
            raise JournalError(
                f"the job's database holds shoal schema {version}, older than this shoal's"
                f" ({SCHEMA_VERSION}), and cannot be brought up to date from here: {exc}"
            ) from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._connection.close()

    async def options(self) -> dict[str, Any]:
        """The options the job was created with (the command and its parameters)."""
        kept = await self._connection.fetchval(
            "SELECT options FROM shoal_jobs WHERE id = $1", self._job_id
        )
        return dict(orjson.loads(kept)) if kept else {}

    async def settings(self) -> dict[str, Any] | None:
        kept = await self._connection.fetchval(
            "SELECT settings FROM shoal_jobs WHERE id = $1", self._job_id
        )
        return None if kept is None else dict(orjson.loads(kept))

    async def summary(self) -> JobSummary:
        """The job's counts, status classes and error kinds, all read from one snapshot
        (each statement on its own would see the commits made between them)."""
        connection = self._connection
        async with self._snapshot():
            job = await connection.fetchrow(
                "SELECT input, input_done, input_items FROM shoal_jobs WHERE id = $1",
                self._job_id,
            )
            tallies = await connection.fetchrow(
                "SELECT COALESCE(SUM(admitted), 0), COALESCE(SUM(ok), 0),"
                " COALESCE(SUM(failed), 0) FROM shoal_tallies WHERE job_id = $1",
                self._job_id,
            )
            errors = await connection.fetch(
                "SELECT convert_from(record, 'UTF8')::jsonb -> 'error' ->> 'kind', count(*)"
                " FROM shoal_records WHERE job_id = $1 AND failed GROUP BY 1 ORDER BY 2 DESC, 1",
                self._job_id,
            )
            statuses = await connection.fetch(
                "SELECT (convert_from(record, 'UTF8')::jsonb ->> 'status')::int / 100, count(*)"
                " FROM shoal_records WHERE job_id = $1 GROUP BY 1 ORDER BY 1",
                self._job_id,
            )
        return JobSummary(
            input=job["input"],
            admitted=int(tallies[0]),
            ok=int(tallies[1]),
            failed=int(tallies[2]),
            input_done=job["input_done"],
            lines_read=int(job["input_items"]),
            by_error={str(kind): int(count) for kind, count in errors if kind is not None},
            by_status={f"{c}xx": int(count) for c, count in statuses if c is not None},
        )

    async def workers(self) -> int:
        """The workers running now (a heartbeat seen within the last minute)."""
        return int(
            await self._connection.fetchval(
                "SELECT count(*) FROM shoal_workers WHERE job_id = $1 AND NOT stopped"
                " AND seen_at > now() - interval '1 minute'",
                self._job_id,
            )
        )

    async def paused(self) -> bool:
        """Whether the job is paused (every worker of it)."""
        return bool(
            await self._connection.fetchval(
                "SELECT paused FROM shoal_jobs WHERE id = $1", self._job_id
            )
        )

    async def share_pause(self, paused: bool) -> None:
        """Pause (or resume) every worker of the job: the one thing this reader writes.
        Each worker sees it within about a second (see :mod:`.watch`)."""
        await self._connection.execute(
            "UPDATE shoal_jobs SET paused = $2 WHERE id = $1", self._job_id, paused
        )

    async def worker_rows(self) -> list[WorkerRow]:
        """Every worker that ever joined the job, in the order they started: the records
        each made final (its tallies), and whether it stopped."""
        rows = await self._connection.fetch(
            "SELECT w.worker, w.machine, COALESCE(t.ok, 0), COALESCE(t.failed, 0), w.stopped"
            " FROM shoal_workers AS w LEFT JOIN shoal_tallies AS t"
            " ON t.job_id = w.job_id AND t.worker = w.worker"
            ' WHERE w.job_id = $1 ORDER BY w.started_at, w.worker COLLATE "C"',
            self._job_id,
        )
        return [
            WorkerRow(worker, machine, int(ok), int(failed), stopped)
            for worker, machine, ok, failed, stopped in rows
        ]

    # -- for the report ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[None]:
        """One read-only snapshot of the database for what is read inside (workers that
        commit meanwhile are not seen), unless one is open already."""
        if self._connection.is_in_transaction():
            yield
            return
        async with self._connection.transaction(isolation="repeatable_read", readonly=True):
            yield

    async def totals(self) -> RecordTotals:
        """Status counts, latency histograms, bytes, attempts and the outputs' shares, over
        every final record: streamed a batch at a time through the journal reader's own
        :class:`~shoal.store.summary.TotalsCounter`."""
        counter = TotalsCounter()
        async with self._snapshot():
            cursor = await self._connection.cursor(
                "SELECT record FROM shoal_records WHERE job_id = $1", self._job_id
            )
            while rows := await cursor.fetch(_BATCH):
                counter.add(row[0] for row in rows)
        return counter.totals()

    async def timeline_span(self) -> TimelineSpan | None:
        """Where the job's timeline lies (``None``: nothing is final yet). Its source is
        always ``"journal"``: every commit counts its records in ``shoal_timeline`` in the
        transaction that records them, so the timeline covers every record."""
        first, last, ok, failed = await self._connection.fetchrow(
            "SELECT min(second), max(second), COALESCE(sum(ok), 0)::bigint,"
            " COALESCE(sum(failed), 0)::bigint FROM shoal_timeline WHERE job_id = $1",
            self._job_id,
        )
        return None if first is None else TimelineSpan("journal", first, last, ok, failed)

    async def timeline(self, span: TimelineSpan, seconds: int) -> list[Interval]:
        """The timeline, every worker's summed, in intervals of ``seconds`` from
        ``span.first``, in order; an interval in which nothing was committed is left out."""
        rows = await self._connection.fetch(
            "SELECT (second - $2) / $3 AS i, sum(ok)::bigint, sum(failed)::bigint,"
            " sum(bytes)::bigint, sum(attempts)::bigint FROM shoal_timeline"
            " WHERE job_id = $1 GROUP BY i ORDER BY i",
            self._job_id,
            span.first,
            seconds,
        )
        return [
            Interval(span.first + index * seconds, seconds, ok, failed, size, tries)
            for index, ok, failed, size, tries in rows
        ]

    async def hosts(self, limit: int) -> Top[HostRow]:
        """The hosts with the most final records (by the requests' URLs), or for a map
        the groups."""
        rows = await self._connection.fetch(
            "SELECT host, count(*) AS n, count(*) FILTER (WHERE failed),"
            " COALESCE(sum(b), 0)::bigint, avg(ms), count(*) OVER () FROM"
            f" (SELECT COALESCE({_URL_HOST}, t ->> 'group') AS host, failed,"
            " (t ->> 'bytes')::bigint AS b, (t ->> 'elapsed_ms')::float8 AS ms"
            f" FROM ({_RECORDS}) AS r) AS h"
            ' GROUP BY host ORDER BY n DESC, host COLLATE "C" NULLS FIRST LIMIT $2',
            self._job_id,
            limit,
        )
        return Top(
            [HostRow(host, n, failed, size, mean) for host, n, failed, size, mean, _ in rows],
            rows[0][-1] if rows else 0,
        )

    async def error_groups(self, limit: int) -> Top[ErrorGroup]:
        """Final failures grouped by kind and message, the largest groups first."""
        rows = await self._connection.fetch(
            'SELECT kind, message, count(*) AS n, min(url COLLATE "C"), count(*) OVER () FROM'
            " (SELECT t -> 'error' ->> 'kind' AS kind, t -> 'error' ->> 'message' AS message,"
            " COALESCE(t ->> 'url', t ->> 'key') AS url"
            f" FROM ({_RECORDS}) AS r WHERE failed) AS e GROUP BY kind, message"
            ' ORDER BY n DESC, kind COLLATE "C" NULLS FIRST, message COLLATE "C" NULLS FIRST'
            " LIMIT $2",
            self._job_id,
            limit,
        )
        return Top(
            [
                ErrorGroup(str(kind), str(message or ""), n, str(url or ""))
                for kind, message, n, url, _ in rows
            ],
            rows[0][-1] if rows else 0,
        )

    async def report_source(
        self, *, hosts: int, errors: int, interval: Callable[[TimelineSpan], int]
    ) -> SharedSnapshot:
        """Everything ``shoal report`` shows of the job, read ahead in one snapshot (so
        that what workers commit meanwhile cannot make one table disagree with another):
        the top ``hosts`` hosts and ``errors`` error groups, and the timeline in intervals
        of ``interval(span)`` seconds. The page is then drawn from memory."""
        async with self._snapshot():
            summary = await self.summary()
            span = await self.timeline_span()
            seconds = 0 if span is None else interval(span)
            return SharedSnapshot(
                name=self.name,
                path=shown_dsn(self.dsn),
                summary=summary,
                totals=await self.totals(),
                span=span,
                seconds=seconds,
                timeline=[] if span is None else await self.timeline(span, seconds),
                hosts=(hosts, await self.hosts(hosts)),
                errors=(errors, await self.error_groups(errors)),
                settings=await self.settings(),
                workers=await self.worker_rows(),
            )

    async def records(self, *, failed: bool | None = None) -> AsyncGenerator[bytes, None]:
        """The final records in commit order (``failed``: only failures, or only successes)."""
        after = 0
        while True:
            rows = await self._connection.fetch(
                "SELECT done_seq, record FROM shoal_records WHERE job_id = $1 AND done_seq > $2"
                " AND ($3::bool IS NULL OR failed = $3) ORDER BY done_seq LIMIT $4",
                self._job_id,
                after,
                failed,
                _BATCH,
            )
            if not rows:
                return
            after = rows[-1][0]
            for _, record in rows:
                yield bytes(record)
