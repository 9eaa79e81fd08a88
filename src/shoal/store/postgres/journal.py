"""The shared journal's writes, each inside a transaction its caller holds: the rows an
entry is staged as, hosts marked as having work, the tallies, the follow-ups a commit
admits, and the commit of results itself (fenced by the host leases: see
:mod:`shoal.store.postgres`).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shoal.job import Entry, Item, Job
from shoal.outcome import Finished
from shoal.result import Result
from shoal.store.postgres.schema import HOSTS_HAVE_WORK, INSERT_REQUESTS, MARK_WORK, UNNEST_ROWS
from shoal.store.specs import encode_entry
from shoal.store.store import Record, Retrying

#: A staged row: key, host, line, spec, depth, parent, ord.
Row = tuple[bytes, str, int | None, bytes, int, int | None, int]


@dataclass(slots=True)
class Made:
    """What one commit's transaction made."""

    records: list[Record]
    refused: set[int]
    duplicate: int = 0
    over_budget: int = 0


class JournalWriter:
    """The writes of worker ``worker`` to job ``job_id``; ``parts``: the buckets a map's
    items in no group are spread over (1: one bucket)."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.job_id = 0
        self.parts = 1

    def row(self, entry: Entry, order: int) -> Row:
        """An entry as a staged row (key, host, line, spec, depth, parent, ord); an item in
        no group goes to one of ``parts`` buckets by its key (one bucket when ``parts`` is 1)."""
        host = entry.host
        if host is None and self.parts > 1 and entry.error is None and isinstance(entry.work, Item):
            host = f"~{zlib.crc32(entry.key) % self.parts:02d}"
        return (
            entry.key,
            host or "",
            entry.line,
            encode_entry(entry),
            entry.depth,
            entry.parent,
            order,
        )

    async def hosts_have_work(self, connection: Any, hosts: list[str]) -> None:
        await connection.execute(HOSTS_HAVE_WORK, self.job_id, hosts)
        await connection.execute(MARK_WORK, self.job_id, hosts)

    async def tally(
        self, connection: Any, *, admitted: int = 0, ok: int = 0, failed: int = 0
    ) -> None:
        if admitted or ok or failed:
            await connection.execute(
                "INSERT INTO shoal_tallies AS t (job_id, worker, admitted, ok, failed)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, worker) DO UPDATE SET"
                " admitted = t.admitted + $3, ok = t.ok + $4, failed = t.failed + $5",
                self.job_id,
                self.worker,
                admitted,
                ok,
                failed,
            )

    async def commit(
        self,
        connection: Any,
        finals: Sequence[tuple[Job, Finished]],
        retries: Sequence[tuple[Job, Retrying]],
        encoded: Sequence[bytes],
        budget: int | None,
    ) -> Made:
        """Commit ``finals`` (their records ``encoded``) whose host this worker still
        holds under their lease, the attempts of ``retries``, and the follow-ups the
        finals found (within ``budget``); what it made, and the finals refused."""
        hosts = sorted({job.host for job, _ in finals})
        valid = (
            dict(
                await connection.fetch(
                    "SELECT host, token FROM shoal_hosts WHERE job_id = $1"
                    " AND host = ANY($2::text[]) AND owner = $3 AND expires_at > now()"
                    " ORDER BY host FOR SHARE",
                    self.job_id,
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
                self.job_id,
                [job.host for job, _ in retries],
                [job.seq for job, _ in retries],
                [result.attempts for _, result in retries],
            )
        kept = [n for n, (job, _) in enumerate(finals) if valid.get(job.host) == job.lease]
        refused = {finals[n][0].seq for n in range(len(finals))} - {finals[n][0].seq for n in kept}
        if not kept:
            return Made([], refused)
        await connection.execute(
            "DELETE FROM shoal_queue AS q"
            " USING unnest($2::text[], $3::bigint[]) AS u(host, seq)"
            " WHERE q.job_id = $1 AND q.host = u.host AND q.seq = u.seq",
            self.job_id,
            [finals[n][0].host for n in kept],
            [finals[n][0].seq for n in kept],
        )
        inserted = await connection.fetch(
            "INSERT INTO shoal_records (job_id, done_seq, seq, failed, worker, record)"
            " SELECT $1, nextval('shoal_done'), u.seq, u.failed, $2, u.record"
            " FROM (SELECT * FROM unnest($3::bigint[], $4::bool[], $5::bytea[])"
            "   WITH ORDINALITY AS v(seq, failed, record, ord) ORDER BY ord) AS u"
            " ON CONFLICT (job_id, seq) DO NOTHING RETURNING done_seq, seq",
            self.job_id,
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
            size += result.bytes if isinstance(result, Result) else 0
            attempts += result.attempts
            if job.found:
                found += job.found
        if records:
            await connection.execute(
                "INSERT INTO shoal_timeline AS t (job_id, second, worker, ok, failed, bytes,"
                " attempts) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (job_id, second, worker) DO UPDATE SET ok = t.ok + $4,"
                " failed = t.failed + $5, bytes = t.bytes + $6, attempts = t.attempts + $7",
                self.job_id,
                int(time.time()),
                self.worker,
                ok,
                failed,
                size,
                attempts,
            )
        admitted, duplicate, over_budget = await self.admit_found(connection, found, budget)
        await self.tally(connection, admitted=len(admitted), ok=ok, failed=failed)
        records.sort()
        return Made(records, refused, duplicate, over_budget)

    async def admit_found(
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
                "SELECT 1 FROM shoal_jobs WHERE id = $1 FOR UPDATE", self.job_id
            )
            total = await connection.fetchval(
                "SELECT COALESCE(SUM(admitted), 0) FROM shoal_tallies WHERE job_id = $1",
                self.job_id,
            )
            known = await connection.fetch(
                "SELECT key FROM shoal_requests WHERE job_id = $1 AND key = ANY($2::bytea[])",
                self.job_id,
                [entry.key for entry in entries],
            )
            seen = {bytes(row[0]) for row in known}
            duplicate += len(seen)
            fresh = [entry for entry in entries if entry.key not in seen]
            room = max(0, budget - int(total))
            over_budget = max(0, len(fresh) - room)
            entries = fresh[:room]
        rows = [self.row(entry, n) for n, entry in enumerate(entries)]
        if not rows:
            return [], duplicate, over_budget
        new = await connection.fetch(
            INSERT_REQUESTS.format(rows=UNNEST_ROWS),
            self.job_id,
            *[[row[i] for row in rows] for i in range(6)],
        )
        await self.hosts_have_work(connection, sorted({row[1] for row in rows}))
        admitted = [Job.admit(seq, by_key[bytes(key)]) for seq, key in new]
        return admitted, duplicate + len(rows) - len(admitted), over_budget
