"""Host leases: which hosts of a shared job this worker holds, and the jobs it takes of
them (see :mod:`shoal.store.postgres` for what the leases guarantee).

A worker acquires free hosts with work up to its fair share (hosts with work per live
worker), takes their jobs oldest first a part of the room at a time, renews its leases by
heartbeat, and hands a host on (with the pace it has) once it has none of its work left,
after ``hold_s``, or when it holds more than its share. Each lease has a deadline on the
monotonic clock, counted from before its renewal was sent and ``margin_s`` short of the
TTL: past it nothing more is sent to the host, whether or not the database answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shoal.job import Job
from shoal.store.postgres.connection import Database, transient
from shoal.store.postgres.schema import ACQUIRE, FETCH, RENEW
from shoal.store.specs import JobRow, restore_jobs
from shoal.store.store import Claim, HostPace, PaceReader

#: Jobs of one host a worker hands its scheduler at a time.
_HOST_BATCH = 256
#: Hosts acquired in one round, at most.
_ACQUIRE_MAX = 64
#: How long a worker waits between looks for work when it found none (seconds).
_POLL_MIN_S, _POLL_MAX_S = 0.02, 0.5
#: A worker does not take back, for this long, a host it handed on (so another may).
_HANDED_ON_S = 2.0


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


class HostLeases:
    """The hosts worker ``worker`` holds of job ``job_id``, kept in ``database``.

    ``ttl_s``: how long a lease lasts without a heartbeat; ``hold_s``: how long a host is
    kept before it is handed on; ``wait``: keep looking for work once none is left.
    """

    def __init__(
        self, database: Database, worker: str, *, ttl_s: float, hold_s: float, wait: bool
    ) -> None:
        self.worker = worker
        self.job_id = 0
        self.ttl_s = ttl_s
        #: How far short of the TTL a lease's deadline falls.
        self.margin_s = max(0.2, ttl_s / 6)
        #: The longest an attempt may last: an expired lease waits this long to be taken.
        self.grace_s = 60.0
        self._db = database
        self._hold_s = hold_s
        self._wait = wait
        self._leases: dict[str, _Lease] = {}
        self._deferred: dict[str, deque[Job]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._pace_of: PaceReader | None = None
        self._poll_s = _POLL_MIN_S
        self._fair_checked = -math.inf
        self._share, self._share_at = 1, -math.inf
        self._closed = False

    def start(self, job_id: int) -> None:
        """Begin renewing leases (of job ``job_id``) by heartbeat."""
        self.job_id = job_id
        self._heartbeat = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        """Take no more work and stop the heartbeat (the leases stay until handed on)."""
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    async def hand_on_all(self) -> None:
        """Hand on every host still held."""
        await self._release(list(self._leases))

    def holds(self, job: Job) -> bool:
        """Whether ``job`` may still be sent: its host's lease held, under its token."""
        lease = self._leases.get(job.host)
        return (
            lease is not None
            and lease.token == job.lease
            and not lease.leaving
            and time.monotonic() < lease.deadline
        )

    def let_go(self, jobs: Sequence[Job]) -> None:
        """``jobs`` are no longer out here: final, or left pending for another run."""
        for job in jobs:
            lease = self._leases.get(job.host)
            if lease is not None and lease.token == job.lease:
                lease.outstanding -= 1

    async def claim(self, room: int, pace_of: PaceReader) -> Claim | None:
        """Work for up to ``room`` more jobs (see :meth:`shoal.store.Store.claim`)."""
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
                    self.job_id,
                    self.worker,
                    want,
                    self.grace_s,
                    _HANDED_ON_S,
                    self.ttl_s,
                )
            )

        rows = await self._db.run(take)
        acquired = {}
        deadline = started + self.ttl_s - self.margin_s
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
                self.job_id,
                self.ttl_s,
            )
            return int(row[0]), max(1, int(row[1]))

        hosts, workers = await self._db.run(count)
        self._share, self._share_at = max(1, -(-hosts // workers)), now
        return self._share

    async def _over_share(self, now: float) -> list[str]:
        """Hosts held past the fair share (looked at about once a second), the longest
        held first: handed on, so that a worker that joins gets work."""
        if now - self._fair_checked < 1.0:
            return []
        self._fair_checked = now
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
        rows = await self._db.run(
            lambda c: c.fetch(
                FETCH,
                self.job_id,
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
                job.host = host  # the bucket it was admitted to (a map's items in no group)
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
                self.job_id,
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
                self.job_id,
                hosts,
                tokens,
                [p.ready_in_s for p in paces],
                [p.paused_for_s for p in paces],
                [p.delay_s for p in paces],
                self.worker,
            )

        await self._db.run(release)
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
                    self.job_id,
                )
            )

        return await self._db.run(look)

    async def _beat(self) -> None:
        """Renew this worker's leases every third of their TTL, all run long."""
        every = self.ttl_s / 3
        while True:
            await asyncio.sleep(every)
            started = time.monotonic()
            try:
                async with self._db.connection(every) as connection:
                    renewed = await connection.fetch(
                        RENEW, self.job_id, self.worker, self.ttl_s, timeout=every
                    )
                    await connection.execute(
                        "UPDATE shoal_workers SET seen_at = now(), hosts = $3"
                        " WHERE job_id = $1 AND worker = $2",
                        self.job_id,
                        self.worker,
                        len(self._leases),
                        timeout=every,
                    )
            except transient():
                continue  # the deadlines stand: past them, nothing more is sent
            deadline = started + self.ttl_s - self.margin_s
            for host, token in renewed:
                lease = self._leases.get(host)
                if lease is not None and lease.token == token:
                    lease.deadline = deadline

    # -- deferring (a host's jobs beyond what its queue takes, kept until asked for) ---------

    async def defer(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._deferred.setdefault(job.host, deque()).append(job)

    async def take_deferred(self, host: str, limit: int) -> list[Job]:
        queue = self._deferred.get(host)
        if not queue:
            return []
        return [queue.popleft() for _ in range(min(limit, len(queue)))]
