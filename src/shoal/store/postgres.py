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
worker dies or loses its lease mid-request: at most what that worker had in flight.

Tables (each row carries its job's id; the schema is created by the first worker, under an
advisory lock, and its version kept in ``shoal_schema``):

* ``shoal_jobs`` — a job: its name, input, settings, the command line's options (for
  ``shoal worker``), how far its input was admitted.
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
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from shoal.errors import JournalError, OutputError
from shoal.job import Entry, Job
from shoal.sources.source import Position
from shoal.store.postgres_schema import (
    ACQUIRE,
    FETCH,
    HOSTS_HAVE_WORK,
    INSERT_REQUESTS,
    MARK_WORK,
    RENEW,
    STAGE,
    STAGE_COLUMNS,
    UNNEST_ROWS,
    migrate,
)
from shoal.store.specs import JobRow, encode_entry, restore_jobs
from shoal.store.store import (
    Claim,
    Committed,
    Completion,
    HostPace,
    JobCounts,
    JobState,
    PaceReader,
    Record,
    Retrying,
    SinkMark,
    Store,
)

try:
    import asyncpg
except ImportError:  # pragma: no cover - the postgres extra is not installed
    asyncpg = None

T = TypeVar("T")

#: Jobs of one host a worker hands its scheduler at a time.
_HOST_BATCH = 256
#: Hosts acquired in one round, at most.
_ACQUIRE_MAX = 64
#: How long a worker waits between looks for work when it found none (seconds).
_POLL_MIN_S, _POLL_MAX_S = 0.02, 0.5
#: A worker does not take back, for this long, a host it handed on (so another may).
_HANDED_ON_S = 2.0
#: How long a worker keeps trying to reach the database before it stops (seconds).
RECONNECT_S = 120.0

#: Settings every worker of a job must share: the engine's description, by path.
SHARED_SETTINGS = (
    "limits.per_host",
    "limits.max_bytes",
    "limits.max_redirects",
    "timeouts",
    "retry",
    "politeness",
    "crawl",
    "fail_http",
    "user_agent",
    "cookies",
    "verify_tls",
)


@dataclass(slots=True)
class _Lease:
    """A host this worker holds."""

    token: int
    #: Monotonic time past which nothing more is sent to the host (unless renewed).
    deadline: float
    #: Monotonic time it was acquired.
    since: float
    #: The highest seq handed out to the scheduler.
    after: int = 0
    #: Jobs handed out and not yet final here, nor let go.
    outstanding: int = 0
    #: Being handed on: no more of its jobs are taken.
    leaving: bool = False


@dataclass(slots=True)
class _Commit:
    """What one commit's transaction made."""

    records: list[Record]
    refused: set[int]
    admitted: int = 0
    duplicate: int = 0
    over_budget: int = 0
    ok: int = 0
    failed: int = 0


def _transient() -> tuple[type[BaseException], ...]:
    """The faults that pass: the server restarting, a connection lost, a deadlock."""
    assert asyncpg is not None
    return (
        OSError,
        asyncio.TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.TransactionRollbackError,
        asyncpg.exceptions.TooManyConnectionsError,
        asyncpg.exceptions.InternalClientError,
    )


def require_asyncpg() -> None:
    """Refuse, with the fix, when the postgres extra is not installed."""
    if asyncpg is None:
        raise JournalError(
            "a PostgreSQL store needs the postgres extra: pip install 'shoal[postgres]'"
        )


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
        self._wait = wait
        self._ttl_s = lease_ttl_s
        self._hold_s = hold_s
        self._margin_s = max(0.2, lease_ttl_s / 6)
        self._reconnect_s = reconnect_s
        self._options = dict(options or {})
        self._pool: Any = None
        self._admission: Any = None
        self._job_id = 0
        self._leases: dict[str, _Lease] = {}
        self._deferred: dict[str, deque[Job]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._pace_of: PaceReader | None = None
        #: The longest an attempt may last: an expired lease waits this long to be taken.
        self._grace_s = 60.0
        self._poll_s = _POLL_MIN_S
        self._fair_checked = -math.inf
        self._share, self._share_at = 1, -math.inf
        self._closed = False

    # -- the connection ----------------------------------------------------------------------

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation``, again while the database cannot be reached (a restart, a
        lost connection) or a transaction must be retried, for up to ``reconnect_s``."""
        deadline = time.monotonic() + self._reconnect_s
        pause = 0.05
        while True:
            try:
                return await operation()
            except _transient() as exc:
                if time.monotonic() >= deadline:
                    raise OutputError(f"cannot reach the job's database: {exc}") from exc
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)

    async def _run(self, operation: Callable[[Any], Awaitable[T]]) -> T:
        """``operation(connection)`` in one transaction, retried as a whole."""

        async def once() -> T:
            async with self._connection() as connection, connection.transaction():
                return await operation(connection)

        return await self._retrying(once)

    @contextlib.asynccontextmanager
    async def _connection(self, timeout_s: float | None = None) -> AsyncIterator[Any]:
        """A connection of the pool, closed rather than reused when an operation on it
        failed or was cancelled midway (its protocol state is then not to be trusted)."""
        connection = await self._pool.acquire(timeout=timeout_s)
        try:
            yield connection
        except BaseException:
            connection.terminate()
            raise
        finally:
            await self._pool.release(connection)

    # -- opening -----------------------------------------------------------------------------

    async def open(self, input_name: str, fingerprint: str | None = None) -> JobState:
        try:
            self._pool = await self._retrying(
                lambda: asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=4, command_timeout=max(10.0, self._ttl_s)
                )
            )
        except (OSError, ValueError, asyncpg.PostgresError, OutputError) as exc:
            raise JournalError(f"cannot open the job's database {self.dsn}: {exc}") from exc
        await self._run(migrate)
        row = await self._run(lambda c: self._open_job(c, input_name, fingerprint))
        if self._admits:
            self._admits = await self._take_admission()
        await self._read_counts()
        self._heartbeat = asyncio.create_task(self._beat())
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

        async def connect() -> Any:
            return await asyncpg.connect(self.dsn, command_timeout=max(10.0, self._ttl_s))

        connection = await self._retrying(connect)
        locked = await connection.fetchval("SELECT pg_try_advisory_lock($1)", self._job_id)
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

    async def _read_counts(self) -> None:
        async def read(connection: Any) -> None:
            row = await connection.fetchrow(
                "SELECT COALESCE(SUM(admitted), 0), COALESCE(SUM(ok), 0),"
                " COALESCE(SUM(failed), 0) FROM shoal_tallies WHERE job_id = $1",
                self._job_id,
            )
            self.counts.admitted, self.counts.ok, self.counts.failed = (int(v) for v in row)

        await self._run(read)

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

        theirs = await self._run(keep)
        if theirs is not None:
            for path in SHARED_SETTINGS:
                if _at(mine, path) != _at(theirs, path):
                    raise JournalError(
                        f"this worker's {path} ({_show(_at(mine, path))}) differs from job"
                        f" {self.name!r}'s ({_show(_at(theirs, path))}): every worker of a"
                        " job applies the job's settings"
                    )
        self._grace_s = float(mine.get("attempt_max_s") or self._grace_s) + self._margin_s

    # -- admitting ---------------------------------------------------------------------------

    async def admit(self, entries: Sequence[Entry], position: Position) -> list[Job]:
        by_key: dict[bytes, Entry] = {}
        rows: list[_Row] = []
        for entry in entries:
            if entry.key in by_key:
                continue
            by_key[entry.key] = entry
            rows.append(_row(entry, len(rows)))
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
                    await self._hosts_have_work(connection, hosts)
                await connection.execute(
                    "UPDATE shoal_jobs SET input_items = $2, input_offset = $3 WHERE id = $1",
                    self._job_id,
                    position.items,
                    position.offset,
                )
                await self._tally(connection, admitted=len(new))
                return new

        new = await self._retrying(once)
        self.counts.admitted += len(new)
        return [Job.admit(seq, by_key[key]) for seq, key in new]

    async def _hosts_have_work(self, connection: Any, hosts: list[str]) -> None:
        await connection.execute(HOSTS_HAVE_WORK, self._job_id, hosts)
        await connection.execute(MARK_WORK, self._job_id, hosts)

    async def _tally(
        self, connection: Any, *, admitted: int = 0, ok: int = 0, failed: int = 0
    ) -> None:
        if admitted or ok or failed:
            await connection.execute(
                "INSERT INTO shoal_tallies AS t (job_id, worker, admitted, ok, failed)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, worker) DO UPDATE SET"
                " admitted = t.admitted + $3, ok = t.ok + $4, failed = t.failed + $5",
                self._job_id,
                self.worker,
                admitted,
                ok,
                failed,
            )

    async def finish_input(self) -> None:
        await self._run(
            lambda c: c.execute(
                "UPDATE shoal_jobs SET input_done = true WHERE id = $1", self._job_id
            )
        )

    # -- claiming work -----------------------------------------------------------------------

    def holds(self, job: Job) -> bool:
        lease = self._leases.get(job.host)
        return (
            lease is not None
            and lease.token == job.lease
            and not lease.leaving
            and time.monotonic() < lease.deadline
        )

    def let_go(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            lease = self._leases.get(job.host)
            if lease is not None and lease.token == job.lease:
                lease.outstanding -= 1

    async def claim(self, room: int, pace_of: PaceReader) -> Claim | None:
        self._pace_of = pace_of
        while not self._closed:
            now = time.monotonic()
            lost = [host for host, lease in self._leases.items() if now >= lease.deadline]
            if lost:  # not renewed in time: another worker may have it soon
                for host in lost:
                    del self._leases[host]
                return Claim(drop=lost)
            await self._release(
                [h for h, lease in self._leases.items() if lease.leaving and lease.outstanding <= 0]
            )
            drop = [
                host
                for host, lease in self._leases.items()
                if not lease.leaving and now - lease.since >= self._hold_s
            ]
            acquired: dict[str, HostPace] = {}
            if room > 0:
                acquired = await self._acquire(room)
            drop += await self._over_share(now)
            for host in drop:
                self._leases[host].leaving = True
            jobs = await self._fetch(room) if room > 0 else []
            if jobs or acquired or drop:
                self._poll_s = _POLL_MIN_S
                return Claim(jobs, acquired, drop)
            if not self._leases and not self._wait and await self._finished():
                await self._read_counts()
                return None
            await asyncio.sleep(self._poll_s)
            if not any(lease.outstanding for lease in self._leases.values()):
                # Idle: look less and less often. (While jobs are out, their hosts will
                # want more soon: keep looking at the shortest interval.)
                self._poll_s = min(_POLL_MAX_S, self._poll_s * 2)
        return None

    async def _acquire(self, room: int) -> dict[str, HostPace]:
        """Take free hosts with work, up to this worker's fair share."""
        held = sum(1 for lease in self._leases.values() if not lease.leaving)
        share = await self._fair_share()
        want = min(_ACQUIRE_MAX, share - held, room)
        if want <= 0:
            return {}
        started = time.monotonic()

        async def take(connection: Any) -> list[Any]:
            return list(
                await connection.fetch(
                    ACQUIRE,
                    self._job_id,
                    self.worker,
                    want,
                    self._grace_s,
                    _HANDED_ON_S,
                    self._ttl_s,
                )
            )

        rows = await self._run(take)
        acquired = {}
        deadline = started + self._ttl_s - self._margin_s
        for host, token, ready_in, paused_for, delay in rows:
            self._leases[host] = _Lease(token, deadline, started)
            acquired[host] = HostPace(ready_in, paused_for, delay)
        return acquired

    async def _fair_share(self) -> int:
        """Hosts with work per live worker, rounded up (counted at most twice a second:
        at 10^6 hosts the count is not free)."""
        now = time.monotonic()
        if now - self._share_at < 0.5:
            return self._share

        async def count(connection: Any) -> tuple[int, int]:
            row = await connection.fetchrow(
                "SELECT (SELECT count(*) FROM shoal_hosts WHERE job_id = $1 AND has_work),"
                " (SELECT count(*) FROM shoal_workers WHERE job_id = $1 AND NOT stopped"
                "  AND seen_at > now() - make_interval(secs => $2))",
                self._job_id,
                self._ttl_s,
            )
            return int(row[0]), max(1, int(row[1]))

        hosts, workers = await self._run(count)
        self._share, self._share_at = max(1, -(-hosts // workers)), now
        return self._share

    async def _over_share(self, now: float) -> list[str]:
        """Hosts held past the fair share (looked at about once a second), the longest
        held first: handed on, so that a worker that joins gets work."""
        if now - self._fair_checked < 1.0:
            return []
        self._fair_checked = now
        await self._read_counts()  # the whole job's, for progress
        held = [(lease.since, host) for host, lease in self._leases.items() if not lease.leaving]
        excess = len(held) - await self._fair_share()
        return [host for _, host in sorted(held)[:excess]] if excess > 0 else []

    async def _fetch(self, room: int) -> list[Job]:
        """Up to ``room`` jobs of the hosts held, after those handed out already, oldest
        first; a host with none left and nothing out is released."""
        eligible = [
            (host, lease)
            for host, lease in self._leases.items()
            # (a host with enough of its jobs out is asked again once half are done)
            if not lease.leaving and lease.outstanding <= _HOST_BATCH // 2
        ]
        if not eligible or room <= 0:
            return []
        # Each host's part of the room (at least a few, so that many hosts each get some
        # and none is asked for far more than it is likely to be given).
        part = max(4, -(-room // len(eligible)))
        asks = [
            (host, lease.after, min(_HOST_BATCH - lease.outstanding, part))
            for host, lease in eligible
        ]
        rows = await self._run(
            lambda c: c.fetch(
                FETCH,
                self._job_id,
                [a[0] for a in asks],
                [a[1] for a in asks],
                [a[2] for a in asks],
            )
        )
        # The oldest ``room`` of them: a prefix of each host's (its rows come in seq order),
        # so that a host's cursor stays just after the last of its jobs handed out.
        taken = sorted(rows, key=lambda row: row[1])[:room]
        by_host: dict[str, list[JobRow]] = {}
        for host, *row in taken:
            by_host.setdefault(host, []).append(tuple(row))
        found_any = {row[0] for row in rows}
        jobs = []
        empty = []
        for host, lease in eligible:
            found = by_host.get(host)
            if not found:
                if host not in found_any and lease.outstanding <= 0:
                    empty.append(host)
                continue
            claimed = restore_jobs(found)
            for job in claimed:
                job.lease = lease.token
            lease.after = claimed[-1].seq
            lease.outstanding += len(claimed)
            jobs += claimed
        if empty:
            for host in empty:
                self._leases[host].leaving = True
            await self._release(empty)
        jobs.sort(key=lambda job: job.seq)
        return jobs

    async def _release(self, hosts: list[str]) -> None:
        """Hand ``hosts`` on (their jobs here are all final or let go): each keeps the pace
        it has, and whether work is left for it is looked at again under its row's lock,
        so that work admitted meanwhile is never left behind."""
        if not hosts:
            return
        hosts = sorted(hosts)
        pace_of = self._pace_of
        paces = [pace_of(host) if pace_of is not None else HostPace() for host in hosts]
        tokens = [self._leases[host].token for host in hosts]

        async def release(connection: Any) -> None:
            await connection.execute(
                "SELECT 1 FROM shoal_hosts WHERE job_id = $1 AND host = ANY($2::text[])"
                " ORDER BY host FOR UPDATE",
                self._job_id,
                hosts,
            )
            # A new statement, so a new snapshot: it sees work committed while it waited.
            await connection.execute(
                "UPDATE shoal_hosts AS h SET owner = NULL, expires_at = NULL,"
                " released_at = now(),"
                " resume_at = now() + make_interval(secs => u.ready),"
                " paused_until = now() + make_interval(secs => u.paused),"
                " delay_s = u.delay,"
                " has_work = EXISTS (SELECT 1 FROM shoal_queue AS q"
                "   WHERE q.job_id = $1 AND q.host = h.host)"
                " FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::float8[], $6::float8[])"
                "   AS u(host, token, ready, paused, delay)"
                " WHERE h.job_id = $1 AND h.host = u.host AND h.owner = $7 AND h.token = u.token",
                self._job_id,
                hosts,
                tokens,
                [p.ready_in_s for p in paces],
                [p.paused_for_s for p in paces],
                [p.delay_s for p in paces],
                self.worker,
            )

        await self._run(release)
        for host in hosts:
            self._leases.pop(host, None)
            self._deferred.pop(host, None)

    async def _finished(self) -> bool:
        """Whether the whole job is done: its input admitted and no request pending."""

        async def look(connection: Any) -> bool:
            return bool(
                await connection.fetchval(
                    "SELECT input_done AND NOT EXISTS"
                    " (SELECT 1 FROM shoal_queue WHERE job_id = $1)"
                    " FROM shoal_jobs WHERE id = $1",
                    self._job_id,
                )
            )

        return await self._run(look)

    async def _beat(self) -> None:
        """Renew this worker's leases every third of their TTL, all run long."""
        every = self._ttl_s / 3
        while True:
            await asyncio.sleep(every)
            started = time.monotonic()
            try:
                async with self._connection(every) as connection:
                    renewed = await connection.fetch(
                        RENEW, self._job_id, self.worker, self._ttl_s, timeout=every
                    )
                    await connection.execute(
                        "UPDATE shoal_workers SET seen_at = now()"
                        " WHERE job_id = $1 AND worker = $2",
                        self._job_id,
                        self.worker,
                        timeout=every,
                    )
            except _transient():
                continue  # the deadlines stand: past them, nothing more is sent
            deadline = started + self._ttl_s - self._margin_s
            for host, token in renewed:
                lease = self._leases.get(host)
                if lease is not None and lease.token == token:
                    lease.deadline = deadline

    # -- deferring (a host's jobs beyond what its queue takes, kept until asked for) ---------

    async def pending(self, after_seq: int, limit: int) -> list[Job]:
        return []  # every job comes from claim()

    async def defer(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._deferred.setdefault(job.host, deque()).append(job)

    async def take_deferred(self, host: str, limit: int) -> list[Job]:
        queue = self._deferred.get(host)
        if not queue:
            return []
        return [queue.popleft() for _ in range(min(limit, len(queue)))]

    # -- committing --------------------------------------------------------------------------

    async def complete(
        self, done: Sequence[Completion], mark: SinkMark, *, budget: int | None = None
    ) -> Committed:
        finals = [(job, result) for job, result in done if not isinstance(result, Retrying)]
        retries = [(job, result) for job, result in done if isinstance(result, Retrying)]
        hosts = sorted({job.host for job, _ in finals})
        encoded = [memoryview(orjson.dumps(result.to_record())).tobytes() for _, result in finals]

        async def commit(connection: Any) -> _Commit:
            valid = (
                dict(
                    await connection.fetch(
                        "SELECT host, token FROM shoal_hosts WHERE job_id = $1"
                        " AND host = ANY($2::text[]) AND owner = $3 AND expires_at > now()"
                        " ORDER BY host FOR SHARE",
                        self._job_id,
                        hosts,
                        self.worker,
                    )
                )
                if hosts
                else {}
            )
            if retries:  # not final: the attempts made (never fewer than known)
                await connection.execute(
                    "UPDATE shoal_queue AS q SET attempts = GREATEST(q.attempts, u.attempts)"
                    " FROM unnest($2::text[], $3::bigint[], $4::int[]) AS u(host, seq, attempts)"
                    " WHERE q.job_id = $1 AND q.host = u.host AND q.seq = u.seq",
                    self._job_id,
                    [job.host for job, _ in retries],
                    [job.seq for job, _ in retries],
                    [result.attempts for _, result in retries],
                )
            kept = [n for n, (job, _) in enumerate(finals) if valid.get(job.host) == job.lease]
            refused = {finals[n][0].seq for n in range(len(finals))} - {
                finals[n][0].seq for n in kept
            }
            if not kept:
                return _Commit([], refused)
            await connection.execute(
                "DELETE FROM shoal_queue AS q"
                " USING unnest($2::text[], $3::bigint[]) AS u(host, seq)"
                " WHERE q.job_id = $1 AND q.host = u.host AND q.seq = u.seq",
                self._job_id,
                [finals[n][0].host for n in kept],
                [finals[n][0].seq for n in kept],
            )
            inserted = await connection.fetch(
                "INSERT INTO shoal_records (job_id, done_seq, seq, failed, worker, record)"
                " SELECT $1, nextval('shoal_done'), u.seq, u.failed, $2, u.record"
                " FROM (SELECT * FROM unnest($3::bigint[], $4::bool[], $5::bytea[])"
                "   WITH ORDINALITY AS v(seq, failed, record, ord) ORDER BY ord) AS u"
                " ON CONFLICT (job_id, seq) DO NOTHING RETURNING done_seq, seq",
                self._job_id,
                self.worker,
                [finals[n][0].seq for n in kept],
                [finals[n][1].error is not None for n in kept],
                [encoded[n] for n in kept],
            )
            new = {seq: done_seq for done_seq, seq in inserted}
            records: list[Record] = []
            ok = failed = size = attempts = 0
            found: list[Entry] = []
            for n in kept:
                job, result = finals[n]
                done_seq = new.get(job.seq)
                if done_seq is None:
                    continue  # committed already (a retried commit whose first try landed)
                records.append((done_seq, encoded[n]))
                if result.error is None:
                    ok += 1
                else:
                    failed += 1
                size += result.bytes
                attempts += result.attempts
                if job.found:
                    found += job.found
            if records:
                await connection.execute(
                    "INSERT INTO shoal_timeline AS t (job_id, second, worker, ok, failed, bytes,"
                    " attempts) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " ON CONFLICT (job_id, second, worker) DO UPDATE SET ok = t.ok + $4,"
                    " failed = t.failed + $5, bytes = t.bytes + $6, attempts = t.attempts + $7",
                    self._job_id,
                    int(time.time()),
                    self.worker,
                    ok,
                    failed,
                    size,
                    attempts,
                )
            admitted, duplicate, over_budget = await self._admit_found(connection, found, budget)
            await self._tally(connection, admitted=len(admitted), ok=ok, failed=failed)
            records.sort()
            return _Commit(records, refused, len(admitted), duplicate, over_budget, ok, failed)

        made = await self._run(commit)
        for job, _ in finals:
            if job.seq not in made.refused:
                lease = self._leases.get(job.host)
                if lease is not None and lease.token == job.lease:
                    lease.outstanding -= 1
        self.counts.ok += made.ok
        self.counts.failed += made.failed
        self.counts.admitted += made.admitted
        # Follow-ups wait in the queue for their host's owner (this worker or another).
        return Committed(
            made.records, [], made.duplicate, made.over_budget, frozenset(made.refused)
        )

    async def _admit_found(
        self, connection: Any, found: list[Entry], budget: int | None
    ) -> tuple[list[Job], int, int]:
        """Admit follow-ups inside the commit's transaction; with a ``budget``, the job's
        row is locked meanwhile, so that workers admitting at once keep to it exactly."""
        if not found:
            return [], 0, 0
        by_key: dict[bytes, Entry] = {}
        for entry in found:
            by_key.setdefault(entry.key, entry)
        entries = list(by_key.values())
        duplicate = len(found) - len(entries)
        over_budget = 0
        if budget is not None:
            await connection.execute(
                "SELECT 1 FROM shoal_jobs WHERE id = $1 FOR UPDATE", self._job_id
            )
            total = await connection.fetchval(
                "SELECT COALESCE(SUM(admitted), 0) FROM shoal_tallies WHERE job_id = $1",
                self._job_id,
            )
            known = await connection.fetch(
                "SELECT key FROM shoal_requests WHERE job_id = $1 AND key = ANY($2::bytea[])",
                self._job_id,
                [entry.key for entry in entries],
            )
            seen = {bytes(row[0]) for row in known}
            duplicate += len(seen)
            fresh = [entry for entry in entries if entry.key not in seen]
            room = max(0, budget - int(total))
            over_budget = max(0, len(fresh) - room)
            entries = fresh[:room]
        rows = [_row(entry, n) for n, entry in enumerate(entries)]
        if not rows:
            return [], duplicate, over_budget
        new = await connection.fetch(
            INSERT_REQUESTS.format(rows=UNNEST_ROWS),
            self._job_id,
            *[[row[i] for row in rows] for i in range(6)],
        )
        await self._hosts_have_work(connection, sorted({row[1] for row in rows}))
        admitted = [Job.admit(seq, by_key[bytes(key)]) for seq, key in new]
        return admitted, duplicate + len(rows) - len(admitted), over_budget

    # -- reading back ------------------------------------------------------------------------

    async def records_after(self, done_seq: int, limit: int) -> list[Record]:
        rows = await self._run(
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
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        try:
            if self._pool is not None and self._job_id:
                await asyncio.wait_for(self._sign_off(), max(5.0, self._ttl_s / 2))
        except (OutputError, TimeoutError):
            pass  # unreachable: the leases expire by themselves
        except _transient():
            pass  # unreachable: the leases expire by themselves
        finally:
            if self._admission is not None:
                with contextlib.suppress(*_transient()):
                    await self._admission.close()
                self._admission = None
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None

    async def _sign_off(self) -> None:
        """Hand on every host still held, and mark this worker stopped."""
        self._reconnect_s = 0.0  # one try: a stop must not wait for the database
        await self._release(list(self._leases))
        await self._run(
            lambda c: c.execute(
                "UPDATE shoal_workers SET stopped = true, seen_at = now()"
                " WHERE job_id = $1 AND worker = $2",
                self._job_id,
                self.worker,
            )
        )


#: A staged row: key, host, line, spec, depth, parent, ord.
_Row = tuple[bytes, str, int | None, bytes, int, int | None, int]


def _row(entry: Entry, order: int) -> _Row:
    """An entry as a staged row (key, host, line, spec, depth, parent, ord)."""
    return (
        entry.key,
        entry.host or "",
        entry.line,
        encode_entry(entry),
        entry.depth,
        entry.parent,
        order,
    )


def _at(settings: Mapping[str, Any], path: str) -> Any:
    value: Any = settings
    for name in path.split("."):
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


def _show(value: Any) -> str:
    return orjson.dumps(value).decode()
