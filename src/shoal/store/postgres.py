"""The shared journal: one job in PostgreSQL, worked on by any number of workers at once.

Every worker (``shoal fetch --store``, ``shoal worker``, or an engine given a
:class:`PostgresStore`) runs the same engine as on SQLite; only the store differs. What it
adds is *host leases*: a worker owns a set of hosts for a while, and it alone sends to them,
so their caps, rates, delays, Retry-After pauses and adaptive state are kept in that
worker's scheduler with no database round trip per request.

* A lease carries a *fencing token*, bumped from one sequence on every change of owner. A
  final result commits only if, in its transaction, the host's lease is still this
  worker's, under the token the job was claimed with, and not expired by the database's
  clock (the lease row is share-locked, so no other worker can take it over meanwhile).
  A worker that stalls and wakes late records nothing.
* Heartbeats renew a worker's leases every third of ``lease_ttl_s``. Each lease also has a
  deadline on the worker's monotonic clock, counted from *before* the renewal was sent and
  a margin short of the TTL: past it, the worker sends nothing more to the host
  (:meth:`PostgresStore.holds`), whether or not the database answers.
* An expired lease is taken over only ``grace`` seconds after its expiry: the longest an
  attempt may last (the job's timeouts). Whatever the old owner started before its
  deadline has ended by then, so two workers never send to one host at the same time.
* Hosts are handed on after ``hold_s``, and a worker holding more than its fair share
  gives up the excess, so a worker that joins mid-job gets hosts. A host handed on carries
  its pace (next start, Retry-After pause, Crawl-delay) to the next owner.

Exactly once: each request has exactly one final record (``shoal_records`` is unique per
request, and only a valid lease commits). A request may be *sent* more than once when its
worker dies or loses its lease mid-request: at most what that worker had in flight, and
the answers it had not yet committed.

Tables (each row carries its job's id; the schema is created by the first worker, under an
advisory lock, and its version kept in ``shoal_schema``):

* ``shoal_jobs`` — a job: its name, input, settings, the command line's options (for
  ``shoal worker``), how far its input was admitted, whether it is paused.
* ``shoal_requests`` — every distinct request, append-only: ``seq``, ``key`` (unique per
  job), ``host``, ``line``, ``spec``, ``depth``, ``parent``.
* ``shoal_queue`` — the requests not final yet, by host: small and churny (a row inserted at
  admission, its ``attempts`` updated on a retry, deleted by the final commit), with
  autovacuum set to keep up. No status column on the big table: at 10^8 rows, updating
  every row once turns into bloat.
* ``shoal_records`` — each request's final record, append-only, in commit order.
* ``shoal_hosts`` — a host: whether it has work, its lease (owner, token, expiry) and the
  pace it carries between owners.
* ``shoal_workers`` — each worker run and its last heartbeat.
* ``shoal_tallies`` and ``shoal_timeline`` — counts per worker (and per second), summed
  when read, so that workers never queue for one row.

This module opens the job, admits its input and commits results; the rest of the store is
in modules beside it: ``postgres_connection`` (the pool, and retrying across a restart),
``postgres_leases`` (host leases: claims, heartbeats, handovers), ``postgres_journal``
(the writes inside a commit), ``postgres_watch`` (the job's pause, counts and workers,
looked at once a second), ``postgres_schema`` (tables, statements, migrations) and
``postgres_reader`` (reading a job without working on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from shoal.config import SHARED_SETTINGS
from shoal.errors import JournalError, OutputError, SettingsMismatch
from shoal.job import Entry, Job
from shoal.sources.source import Position
from shoal.store.postgres_connection import RECONNECT_S, Database, require_asyncpg, transient
from shoal.store.postgres_journal import JournalWriter, Row
from shoal.store.postgres_leases import HostLeases
from shoal.store.postgres_schema import (
    INSERT_REQUESTS,
    STAGE,
    STAGE_COLUMNS,
    migrate,
)
from shoal.store.postgres_watch import JobWatch
from shoal.store.store import (
    Claim,
    Committed,
    Completion,
    JobCounts,
    JobState,
    PaceReader,
    Record,
    Retrying,
    SinkMark,
    Store,
    WorkerState,
)

#: The buckets a map's items in no group are spread over (so that many workers share them).
GROUPLESS_PARTS = 64


class PostgresStore(Store):
    """One job of a PostgreSQL database (``dsn``: ``postgresql://USER@HOST/DB``), named
    ``job``, shared by every worker that opens it; give it to :meth:`shoal.Engine.run` (or
    ``stream``) as the ``journal``, with no ``output``: the job's records are read back from
    the database (``shoal export``) once it is complete.

    ``admit``: this worker may create the job and admit its input (``shoal fetch``); a
    worker that only works (``shoal worker``) passes ``False`` and needs the job to exist.
    ``wait``: keep waiting for work once none is left, until stopped (for input that is
    still to come). ``lease_ttl_s``: how long a host lease lasts without a heartbeat;
    ``hold_s``: how long a worker keeps a host before handing it on.
    """

    leases = True

    def __init__(
        self,
        dsn: str,
        job: str,
        *,
        admit: bool = True,
        wait: bool = False,
        lease_ttl_s: float = 30.0,
        hold_s: float = 120.0,
        options: Mapping[str, Any] | None = None,
        reconnect_s: float = RECONNECT_S,
    ) -> None:
        require_asyncpg()
        if not job:
            raise JournalError("a job in PostgreSQL needs a name (--job NAME)")
        if not lease_ttl_s >= 0.5:
            raise JournalError("the lease TTL must be at least 0.5 seconds")
        self.dsn = dsn
        self.name = job
        self.counts = JobCounts()
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._admits = admit
        self._ttl_s = lease_ttl_s
        self._options = dict(options or {})
        self._db = Database(dsn, command_timeout_s=max(10.0, lease_ttl_s), reconnect_s=reconnect_s)
        self._leases = HostLeases(
            self._db, self.worker, ttl_s=lease_ttl_s, hold_s=hold_s, wait=wait
        )
        self._watch = JobWatch(self._db, self.counts, ttl_s=lease_ttl_s)
        self._journal = JournalWriter(self.worker)
        self._admission: Any = None
        self._job_id = 0
        self._closed = False

    # -- opening -----------------------------------------------------------------------------

    async def open(self, input_name: str, fingerprint: str | None = None) -> JobState:
        await self._db.open()
        await self._db.run(migrate)
        row = await self._db.run(lambda c: self._open_job(c, input_name, fingerprint))
        if self._admits:
            self._admits = await self._take_admission()
        await self._watch.start(self._job_id)  # (the counts, and whether it is paused)
        self._journal.job_id = self._job_id
        self._leases.start(self._job_id)
        resumed, input_done, items, offset, recorded = row
        return JobState(
            Position(items, offset),
            input_done or not self._admits,
            SinkMark(),
            self.counts,
            resumed,
            recorded if self._admits else None,
        )

    async def _open_job(
        self, connection: Any, input_name: str, fingerprint: str | None
    ) -> tuple[bool, bool, int, int, str | None]:
        found = await connection.fetchrow(
            "SELECT id, input, input_done, input_items, input_offset, fingerprint"
            " FROM shoal_jobs WHERE name = $1",
            self.name,
        )
        if found is None:
            if not self._admits:
                raise JournalError(
                    f"the store has no job {self.name!r}: start it with"
                    f" shoal fetch INPUT --store URL --job {self.name}"
                )
            self._job_id = await connection.fetchval(
                "INSERT INTO shoal_jobs (name, input, fingerprint, options) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (name) DO NOTHING RETURNING id",
                self.name,
                input_name,
                fingerprint,
                orjson.dumps(self._options).decode(),
            )
            if self._job_id is None:  # another worker created it just now
                import asyncpg

                raise asyncpg.exceptions.SerializationError("the job was created meanwhile")
            resumed = False
            found = {"input_done": False, "input_items": 0, "input_offset": 0}
            recorded = fingerprint
        else:
            self._job_id = found["id"]
            if self._admits and found["input"] != input_name:
                raise JournalError(
                    f"job {self.name!r} reads another input ({found['input']!r}); pass"
                    " another --job name, or run shoal worker to work on it"
                )
            resumed = True
            recorded = found["fingerprint"]
        await connection.execute(
            "INSERT INTO shoal_workers (job_id, worker, machine, pid) VALUES ($1, $2, $3, $4)",
            self._job_id,
            self.worker,
            socket.gethostname(),
            os.getpid(),
        )
        return (
            resumed,
            found["input_done"],
            found["input_items"],
            found["input_offset"],
            recorded,
        )

    @property
    def admits(self) -> bool:
        """Whether this run admits the job's input (else it only works on the job)."""
        return self._admits

    async def _take_admission(self) -> bool:
        """Hold the job's admission lock on a connection of its own: one run at a time
        reads a job's input, and any number work on it. False when another run holds it:
        this one works alongside."""

        connection = await self._db.connect()
        # Advisory locks are the whole database's: the key names the schema too, so that
        # jobs of two schemas (two teams, two test runs) never share one.
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || '/' || $1, 0))",
            str(self._job_id),
        )
        if not locked:
            await connection.close()
            return False
        await connection.execute(STAGE)
        self._admission = connection
        return True

    async def _admission_connection(self) -> Any:
        """The admission connection, connected again (and its lock taken again) after a
        restart of the database."""
        connection = self._admission
        if connection is not None and not connection.is_closed():
            return connection
        self._admission = None
        if not await self._take_admission():
            raise OutputError(f"job {self.name!r}: another run took over admitting its input")
        return self._admission

    async def describe(self, settings: Mapping[str, Any]) -> None:
        """Keep the first worker's settings with the job; refuse a worker whose shared
        settings differ (every worker of a job applies the job's)."""
        mine = orjson.loads(orjson.dumps(settings))

        async def keep(connection: Any) -> dict[str, Any] | None:
            kept = await connection.fetchval(
                "SELECT settings FROM shoal_jobs WHERE id = $1 FOR UPDATE", self._job_id
            )
            if kept is None:
                await connection.execute(
                    "UPDATE shoal_jobs SET settings = $2 WHERE id = $1",
                    self._job_id,
                    orjson.dumps(mine).decode(),
                )
                return None
            return dict(orjson.loads(kept))

        theirs = await self._db.run(keep)
        if theirs is not None:
            differences = tuple(
                found
                for path in SHARED_SETTINGS
                for found in _differences(path, _at(mine, path), _at(theirs, path))
            )
            if differences:
                raise SettingsMismatch(self.name, differences)
        leases = self._leases
        leases.grace_s = float(mine.get("attempt_max_s") or leases.grace_s) + leases.margin_s
        # A map's items in no group are one bucket to a single run, which only the
        # concurrency bounds: here they are spread over buckets that workers lease apart.
        # Unless that bucket is paced (a rate, a delay): those hold for the one bucket,
        # across all workers, only if one worker at a time holds it.
        every = _at(mine, "politeness.hosts") or {}
        paced = any(
            _at(policy, "per_second") or _at(policy, "delay_s")
            for policy in (_at(mine, "politeness"), every.get("*"))  # ("*": every bucket)
            if isinstance(policy, Mapping)
        )
        self._journal.parts = 1 if paced else GROUPLESS_PARTS

    # -- the job's shared state (its pause, its workers) ------------------------------------

    @property
    def workers(self) -> tuple[WorkerState, ...]:
        return self._watch.workers

    @property
    def run_name(self) -> str:
        """This worker, as a file name: ``worker-MACHINE-PID-TAG``."""
        return "worker-" + re.sub(r"[^A-Za-z0-9_.]+", "-", self.worker).strip("-.")

    def share_pause(self, paused: bool) -> None:
        self._watch.share_pause(paused)

    async def wait_pause(self, paused: bool) -> bool:
        return await self._watch.wait_pause(paused)

    # -- admitting ---------------------------------------------------------------------------

    async def admit(self, entries: Sequence[Entry], position: Position) -> list[Job]:
        by_key: dict[bytes, Entry] = {}
        rows: list[Row] = []
        for entry in entries:
            if entry.key in by_key:
                continue
            by_key[entry.key] = entry
            rows.append(self._journal.row(entry, len(rows)))
        hosts = sorted({row[1] for row in rows})

        async def once() -> list[tuple[int, bytes]]:
            connection = await self._admission_connection()
            async with connection.transaction():
                new: list[tuple[int, bytes]] = []
                if rows:
                    await connection.copy_records_to_table(
                        "shoal_stage", records=rows, columns=STAGE_COLUMNS
                    )
                    new = [
                        (seq, bytes(key))
                        for seq, key in await connection.fetch(
                            INSERT_REQUESTS.format(rows="shoal_stage"), self._job_id
                        )
                    ]
                    await self._journal.hosts_have_work(connection, hosts)
                await connection.execute(
                    "UPDATE shoal_jobs SET input_items = $2, input_offset = $3 WHERE id = $1",
                    self._job_id,
                    position.items,
                    position.offset,
                )
                await self._journal.tally(connection, admitted=len(new))
                return new

        new = await self._db.retrying(once)
        # (``counts`` are the whole job's, read from the database: see JobWatch.)
        return [Job.admit(seq, by_key[key]) for seq, key in new]

    async def finish_input(self) -> None:
        await self._db.run(
            lambda c: c.execute(
                "UPDATE shoal_jobs SET input_done = true WHERE id = $1", self._job_id
            )
        )

    # -- claiming work (the host leases') --------------------------------------------------

    def holds(self, job: Job) -> bool:
        return self._leases.holds(job)

    def let_go(self, jobs: Sequence[Job]) -> None:
        self._leases.let_go(jobs)

    async def claim(self, room: int, pace_of: PaceReader) -> Claim | None:
        claim = await self._leases.claim(room, pace_of)
        if claim is None:
            await self._watch.read_counts()
        return claim

    async def pending(self, after_seq: int, limit: int) -> list[Job]:
        return []  # every job comes from claim()

    async def defer(self, jobs: Sequence[Job]) -> None:
        await self._leases.defer(jobs)

    async def take_deferred(self, host: str, limit: int) -> list[Job]:
        return await self._leases.take_deferred(host, limit)

    # -- committing --------------------------------------------------------------------------

    async def complete(
        self, done: Sequence[Completion], mark: SinkMark, *, budget: int | None = None
    ) -> Committed:
        finals = [(job, result) for job, result in done if not isinstance(result, Retrying)]
        retries = [(job, result) for job, result in done if isinstance(result, Retrying)]
        encoded = [memoryview(orjson.dumps(result.to_record())).tobytes() for _, result in finals]
        journal = self._journal
        made = await self._db.run(lambda c: journal.commit(c, finals, retries, encoded, budget))
        self._leases.let_go([job for job, _ in finals if job.seq not in made.refused])
        # Follow-ups wait in the queue for their host's owner (this worker or another).
        return Committed(
            made.records, [], made.duplicate, made.over_budget, frozenset(made.refused)
        )

    # -- reading back ------------------------------------------------------------------------

    async def records_after(self, done_seq: int, limit: int) -> list[Record]:
        rows = await self._db.run(
            lambda c: c.fetch(
                "SELECT done_seq, record FROM shoal_records WHERE job_id = $1 AND done_seq > $2"
                " ORDER BY done_seq LIMIT $3",
                self._job_id,
                done_seq,
                limit,
            )
        )
        return [(seq, bytes(record)) for seq, record in rows]

    async def save_mark(self, mark: SinkMark) -> None:
        return None  # the outputs are written from the job once it is complete

    # -- closing -----------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._leases.stop()
        await self._watch.stop()
        try:
            if self._db.is_open and self._job_id:
                await asyncio.wait_for(self._sign_off(), max(5.0, self._ttl_s / 2))
        except (OutputError, TimeoutError):
            pass  # unreachable: the leases expire by themselves
        except transient():
            pass  # unreachable: the leases expire by themselves
        finally:
            if self._admission is not None:
                with contextlib.suppress(*transient()):
                    await self._admission.close()
                self._admission = None
            self._db.close()

    async def _sign_off(self) -> None:
        """Hand on every host still held, and mark this worker stopped."""
        self._db.reconnect_s = 0.0  # one try: a stop must not wait for the database
        await self._leases.hand_on_all()
        await self._db.run(
            lambda c: c.execute(
                "UPDATE shoal_workers SET stopped = true, seen_at = now()"
                " WHERE job_id = $1 AND worker = $2",
                self._job_id,
                self.worker,
            )
        )


def _at(settings: Mapping[str, Any], path: str) -> Any:
    value: Any = settings
    for name in path.split("."):
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


def _differences(path: str, mine: Any, theirs: Any) -> Iterator[tuple[str, Any, Any]]:
    """Each setting under ``path`` whose values differ, as its own path and both values
    (a per-host table, ``politeness.hosts``, as one)."""
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping) and path != "politeness.hosts":
        for name in sorted(set(mine) | set(theirs)):
            yield from _differences(f"{path}.{name}", mine.get(name), theirs.get(name))
    elif mine != theirs:
        yield path, mine, theirs
