"""What a worker of a shared job looks at once a second: whether the job is paused, its
counts (for progress), and the workers running it (for the dashboard).

Pause is the job's, not a worker's: a worker that pauses (its dashboard, its engine's
``pause``) writes it to the job's row, every other worker sees it within a second and
stops starting requests, and a worker that joins a paused job starts paused.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from shoal.store.postgres.connection import Database, any_database_error
from shoal.store.store import JobCounts, WorkerState

#: How often the job's shared state is looked at (seconds).
WATCH_S = 1.0
#: The most workers listed.
WORKERS_SHOWN = 100


class JobWatch:
    """The shared state of job ``job_id`` in ``database``, as this worker last saw it;
    ``counts`` is kept up to date with the whole job's, from the database alone (a worker
    adding its own commits to a sum read concurrently would count them twice, or not).
    Workers whose heartbeat is older than two ``ttl_s`` (their leases lapsed) are not
    listed."""

    def __init__(self, database: Database, counts: JobCounts, *, ttl_s: float) -> None:
        self.counts = counts
        self.workers: tuple[WorkerState, ...] = ()
        self._db = database
        self._ttl_s = ttl_s
        self._job_id = 0
        self._paused = False
        #: A pause (or resume) this worker asked for, not yet written.
        self._wanted: bool | None = None
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        return self._paused

    async def start(self, job_id: int) -> None:
        """Look once (so a worker joining a paused job starts paused), then every second."""
        self._job_id = job_id
        await self._db.run(self._look)
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        wanted = self._wanted
        if wanted is not None:  # asked for just before the end: one more try to write it
            with contextlib.suppress(*any_database_error(), TimeoutError):
                await asyncio.wait_for(self._write(wanted), WATCH_S * 5)

    async def _write(self, paused: bool) -> None:
        async with self._db.connection() as connection:
            await connection.execute(
                "UPDATE shoal_jobs SET paused = $2 WHERE id = $1", self._job_id, paused
            )

    def share_pause(self, paused: bool) -> None:
        self._wanted = paused
        self._set(paused)
        self._wake.set()

    def _set(self, paused: bool) -> None:
        """The job's pause is ``paused`` now: wake whoever waits for it to change (a pause
        made here, then undone by another worker, is a change too)."""
        if paused != self._paused:
            self._paused = paused
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_pause(self, paused: bool) -> bool:
        while self._paused == paused:
            await self._changed.wait()
        return self._paused

    async def read_counts(self) -> None:
        await self._db.run(self._read_counts)

    async def _watch(self) -> None:
        while True:
            self._wake.clear()
            try:
                async with self._db.connection(WATCH_S * 5) as connection:
                    await self._look(connection)
            except any_database_error():
                pass  # the database is away (or the schema is being migrated): look again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), WATCH_S)

    async def _look(self, connection: Any) -> None:
        wanted = self._wanted
        if wanted is not None:
            await connection.execute(
                "UPDATE shoal_jobs SET paused = $2 WHERE id = $1", self._job_id, wanted
            )
            if self._wanted == wanted:
                self._wanted = None
        paused = await connection.fetchval(
            "SELECT paused FROM shoal_jobs WHERE id = $1", self._job_id
        )
        if self._wanted is None:
            self._set(bool(paused))
        await self._read_counts(connection)
        rows = await connection.fetch(
            "SELECT w.worker, w.machine, w.pid, w.hosts, COALESCE(t.ok, 0), COALESCE(t.failed, 0),"
            " EXTRACT(EPOCH FROM now() - w.seen_at)::float8"
            " FROM shoal_workers AS w LEFT JOIN shoal_tallies AS t"
            "   ON t.job_id = w.job_id AND t.worker = w.worker"
            " WHERE w.job_id = $1 AND NOT w.stopped"
            "   AND w.seen_at > now() - make_interval(secs => $2)"
            " ORDER BY w.started_at, w.worker LIMIT $3",
            self._job_id,
            2 * self._ttl_s,
            WORKERS_SHOWN,
        )
        self.workers = tuple(
            WorkerState(worker, machine, pid, hosts, int(ok), int(failed), max(0.0, seen))
            for worker, machine, pid, hosts, ok, failed, seen in rows
        )

    async def _read_counts(self, connection: Any) -> None:
        row = await connection.fetchrow(
            "SELECT COALESCE(SUM(admitted), 0), COALESCE(SUM(ok), 0),"
            " COALESCE(SUM(failed), 0) FROM shoal_tallies WHERE job_id = $1",
            self._job_id,
        )
        self.counts.admitted, self.counts.ok, self.counts.failed = (int(v) for v in row)
