"""Reading a job kept in PostgreSQL without working on it: for ``shoal status``,
``shoal export``, ``shoal worker`` (the job's options) and a finished job's ``-o``.

Read while workers run, it sees what they have committed so far. Records stream in commit
order, a batch at a time; the summary's groupings are computed by the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import orjson

from shoal.errors import JournalError
from shoal.store.postgres import require_asyncpg
from shoal.store.reader import JobSummary

_BATCH = 2048


class PostgresReader:
    """One job of the database at ``dsn``, by name; use it as an async context manager."""

    def __init__(self, dsn: str, job: str, *, patience_s: float = 0.0) -> None:
        require_asyncpg()
        self.dsn = dsn
        self.name = job
        #: How long to keep trying to connect (a database restarting) before giving up.
        self.patience_s = patience_s
        self._connection: Any = None
        self._job_id = 0

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
                raise JournalError(f"cannot reach the job's database {self.dsn}") from None
            except (ValueError, asyncpg.PostgresError) as exc:
                raise JournalError(f"cannot open the job's database {self.dsn}: {exc}") from exc
        try:
            exists = await self._connection.fetchval("SELECT to_regclass('shoal_jobs') IS NOT NULL")
            job_id = None
            if exists:
                job_id = await self._connection.fetchval(
                    "SELECT id FROM shoal_jobs WHERE name = $1", self.name
                )
            if job_id is None:
                raise JournalError(f"the store has no job {self.name!r}")
        except BaseException:
            await self._connection.close()
            raise
        self._job_id = job_id
        return self

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
        connection = self._connection
        job = await connection.fetchrow(
            "SELECT input, input_done, input_items FROM shoal_jobs WHERE id = $1", self._job_id
        )
        tallies = await connection.fetchrow(
            "SELECT COALESCE(SUM(admitted), 0), COALESCE(SUM(ok), 0), COALESCE(SUM(failed), 0)"
            " FROM shoal_tallies WHERE job_id = $1",
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

    async def records(self, *, failed: bool | None = None) -> AsyncIterator[bytes]:
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
