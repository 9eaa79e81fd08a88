"""The journal seam: what every store records for a job, and how a committed result becomes
its record (in one place, for the SQLite, memory and PostgreSQL stores alike).

A :class:`Journal` opens (or creates) a job, admits requests, commits a batch of
completions with the sink mark, reads back the records after a mark, keeps the run's
settings and closes. Who may run what next (deferral, claims, host leases) is not its
business: that is the work source's, beside it on :class:`~shoal.store.store.Store`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from shoal.job import Entry, Job
from shoal.outcome import Finished
from shoal.result import Result
from shoal.sources.source import Position
from shoal.store.store import (
    Committed,
    Completion,
    JobCounts,
    JobState,
    Record,
    Retrying,
    SinkMark,
)


class Journal(Protocol):
    """A job's journal: the durable truth of what was admitted and what was committed.

    ``counts`` are the whole job's, read on the event loop: a journal changes them on the
    loop only (never on a thread of its own while the loop reads them)."""

    counts: JobCounts

    async def open(self, input_name: str, fingerprint: str | None = None) -> JobState: ...

    async def admit(self, entries: Sequence[Entry], position: Position) -> list[Job]: ...

    async def finish_input(self) -> None: ...

    async def complete(
        self, done: Sequence[Completion], mark: SinkMark, *, budget: int | None = None
    ) -> Committed: ...

    async def records_after(self, done_seq: int, limit: int) -> list[Record]: ...

    async def save_mark(self, mark: SinkMark) -> None: ...

    async def describe(self, settings: Mapping[str, Any]) -> None: ...

    async def close(self) -> None: ...


def record_of(result: Finished) -> bytes:
    """A final result's record: its JSON line, without the newline."""
    # orjson's bytes keep a buffer of several KiB; an exact copy frees it at once.
    return memoryview(orjson.dumps(result.to_record())).tobytes()


@dataclass(slots=True)
class Batch:
    """A batch of completions sorted out for one commit: the ``finals`` in order with
    their ``encoded`` records (none when records are not kept), the ``retries`` (attempts
    so far, not final), the follow-ups the finals ``found``, and the finals' sums."""

    finals: list[tuple[Job, Finished]] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    retries: list[tuple[Job, Retrying]] = field(default_factory=list)
    found: list[Entry] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    bytes: int = 0
    attempts: int = 0


def sort_batch(done: Sequence[Completion], *, records: bool = True) -> Batch:
    """Sort ``done`` into finals (each encoded as its record, unless ``records`` is
    false) and retries, with the follow-ups found and the sums of the finals."""
    batch = Batch()
    for job, result in done:
        if isinstance(result, Retrying):  # not final: only the attempts made so far
            batch.retries.append((job, result))
            continue
        batch.finals.append((job, result))
        if records:
            batch.encoded.append(record_of(result))
        if job.found:
            batch.found += job.found
        if result.error is None:
            batch.ok += 1
        else:
            batch.failed += 1
        batch.bytes += result.bytes if isinstance(result, Result) else 0
        batch.attempts += result.attempts
    return batch
