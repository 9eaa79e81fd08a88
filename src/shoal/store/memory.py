"""A journal kept in memory: deduplication within one run, no resume.

The library's default when no journal path is given. Its memory grows with the number of
distinct requests (about 100 bytes each); give the engine a journal file for huge lists.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from shoal.job import Entry, Job
from shoal.sources.source import Position
from shoal.store.journal import sort_batch
from shoal.store.store import (
    Committed,
    Completion,
    JobCounts,
    JobState,
    Record,
    SinkMark,
    Store,
)


class MemoryStore(Store):
    """Admits each key once; commits are immediate and vanish with the process.

    With ``records=False`` no JSON records are made (nothing would write them).
    """

    def __init__(self, *, records: bool = True) -> None:
        self.counts = JobCounts()
        self._records = records
        self._keys: set[bytes] = set()
        self._seq = 0
        self._done_seq = 0
        self._deferred: dict[str, deque[Job]] = {}

    async def open(self, input_name: str, fingerprint: str | None = None) -> JobState:
        return JobState(Position(), False, SinkMark(), self.counts, resumed=False)

    async def pending(self, after_seq: int, limit: int) -> list[Job]:
        return []

    async def defer(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            queue = self._deferred.get(job.host)
            if queue is None:
                queue = self._deferred[job.host] = deque()
            queue.append(job)

    async def take_deferred(self, host: str, limit: int) -> list[Job]:
        queue = self._deferred.get(host)
        if queue is None:
            return []
        taken = [queue.popleft() for _ in range(min(limit, len(queue)))]
        if not queue:
            del self._deferred[host]
        return taken

    async def admit(self, entries: Sequence[Entry], position: Position) -> list[Job]:
        jobs = []
        keys = self._keys
        for entry in entries:
            if entry.key in keys:
                continue
            keys.add(entry.key)
            self._seq += 1
            jobs.append(Job.admit(self._seq, entry))
        self.counts.admitted += len(jobs)
        return jobs

    async def finish_input(self) -> None:
        return None

    async def complete(
        self, done: Sequence[Completion], mark: SinkMark, *, budget: int | None = None
    ) -> Committed:
        batch = sort_batch(done, records=self._records)
        admitted: list[Job] = []
        duplicate = over_budget = 0
        for entry in batch.found:  # (retries: attempts so far, nothing to keep)
            if budget is not None and self.counts.admitted >= budget:
                over_budget += 1
            elif entry.key in self._keys:
                duplicate += 1
            else:
                self._keys.add(entry.key)
                self._seq += 1
                self.counts.admitted += 1
                admitted.append(Job.admit(self._seq, entry))
        first = self._done_seq + 1
        records: list[Record] = [(first + n, record) for n, record in enumerate(batch.encoded)]
        self._done_seq += len(batch.finals)
        self.counts.ok += batch.ok
        self.counts.failed += batch.failed
        return Committed(records, admitted, duplicate, over_budget)

    async def records_after(self, done_seq: int, limit: int) -> list[Record]:
        return []

    async def save_mark(self, mark: SinkMark) -> None:
        return None

    async def close(self) -> None:
        return None
