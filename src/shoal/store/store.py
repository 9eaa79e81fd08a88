"""The interface every journal offers the engine, and the values it trades in.

A store admits requests (deduplicating them by key), hands back the ones an earlier run left
unfinished, and commits results. A result and its request's state change commit in one
transaction, together with the *sink mark*: how much of the committed records the outputs
already hold. That is what makes resume exactly-once: after any crash, the outputs are cut
back to the mark and every record after it is written again.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.job import Entry, Job
from shoal.outcome import Finished
from shoal.sources.source import Position


@dataclass(frozen=True, slots=True)
class Retrying:
    """A job that is not final yet: the ``attempts`` it had made when its retry was
    decided (read then, not at the commit, by which time the next attempt may be under way
    and a kill would leave it counted though cut short)."""

    attempts: int


#: A job and its final result, or its attempts so far, ready to be committed.
Completion = tuple[Job, Finished | Retrying]
#: A committed record: its commit sequence number and its JSON line (no newline).
Record = tuple[int, bytes]


#: Names in a sink mark's positions that start so hold the web archive's end (``--warc``),
#: which commits with the records rather than after them.
ARCHIVE_POSITIONS = "warc."


@dataclass(frozen=True, slots=True)
class SinkMark:
    """Every record with ``done_seq`` up to this one is in the outputs, which end at
    ``positions`` (an output name to its size in bytes)."""

    done_seq: int = 0
    positions: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class JobCounts:
    """Counts over the whole job, across runs."""

    admitted: int = 0
    ok: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        return self.admitted - self.ok - self.failed


@dataclass(frozen=True, slots=True)
class JobState:
    """What a store knows of its job when it opens."""

    position: Position
    input_done: bool
    mark: SinkMark
    counts: JobCounts
    resumed: bool
    #: The input's fingerprint as the job's first run recorded it (``None``: none was).
    fingerprint: str | None = None
    #: The highest seq admitted before this run: the pending jobs to pick up end there.
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class Committed:
    """What a commit made: the new ``records`` in order, and the follow-ups it
    ``admitted`` (new jobs), besides those it dropped as ``duplicate`` of requests the job
    holds or as ``over_budget``."""

    records: list[Record]
    admitted: list[Job] = field(default_factory=list)
    duplicate: int = 0
    over_budget: int = 0
    #: The seqs of final results the store refused (a shared store: their host's lease
    #: was lost before they could commit; they stay pending for the host's next owner).
    refused: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class HostPace:
    """The politeness a host carries from one owner to the next (a shared store's host
    lease): seconds until its next request may start, until a Retry-After pause ends, and
    the least delay between its requests that it has earned (a robots.txt Crawl-delay)."""

    ready_in_s: float = 0.0
    paused_for_s: float = 0.0
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """What a shared store hands a worker in one round: ``jobs`` to run (of hosts it
    holds), the hosts it ``acquired`` with the pace each carries, and the hosts to
    ``drop``: their lease is lost, or due to be handed on (take no more of their jobs; give
    back those not started with :meth:`Store.let_go`)."""

    jobs: list[Job] = field(default_factory=list)
    acquired: Mapping[str, HostPace] = field(default_factory=dict)
    drop: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class WorkerState:
    """One worker of a shared job, as the job's database last saw it: its name
    (``machine:pid:tag``), the hosts it holds, the final records it committed, and how
    long ago its last heartbeat was (seconds)."""

    worker: str
    machine: str
    pid: int
    hosts: int
    ok: int
    failed: int
    seen_s: float


#: Reads a host's pace from the scheduler (for a host that a worker hands on).
PaceReader = Callable[[str], HostPace]


class Store(abc.ABC):
    """A job's journal. Methods are called from one task at a time per kind of work.

    Its journal half (open, admit, complete, records after a mark, describe, close) is
    the :class:`~shoal.store.journal.Journal` seam; the rest says who may run what next
    (the work source: pending, defer, claim, holds, let go) and controls the job.

    A *shared* store (``leases`` true: PostgreSQL, many workers on one job) hands out work
    itself: the jobs a run admits are not its to run unless it holds their host, so the
    engine takes every job from :meth:`claim` instead, checks :meth:`holds` before each
    attempt, and :meth:`complete` refuses a result whose host lease was lost meanwhile.
    """

    counts: JobCounts
    #: Whether work comes from :meth:`claim` (hosts leased), not from admission.
    leases: bool = False

    async def claim(self, room: int, pace_of: PaceReader) -> Claim | None:
        """The next round of work, up to ``room`` jobs; ``None`` when the job has none left
        for this worker (a shared store waits for work meanwhile). ``pace_of`` reads the
        pace of a host being handed on. A local store has nothing to hand out."""
        return None

    def holds(self, job: Job) -> bool:
        """Whether this worker may still send ``job`` (its host lease is valid now)."""
        return True

    def let_go(self, jobs: Sequence[Job]) -> None:  # noqa: B027 - optional
        """``jobs`` that were claimed will not run here (their host was dropped, or the
        run stops): they stay pending for whoever holds their host next."""

    @property
    def workers(self) -> tuple[WorkerState, ...]:
        """The workers running the job now, as last looked at (a shared store's; a local
        store has only this run, and none to list)."""
        return ()

    @property
    def run_name(self) -> str | None:
        """A name for this run's own files (its web archive), when many runs share the
        job at once (a shared store's worker); ``None``: the job's files are this run's."""
        return None

    def share_pause(self, paused: bool) -> None:  # noqa: B027 - optional
        """Pause (or resume) the whole job: every worker of a shared store follows, and
        so does one that joins later. A local store's job is this run alone."""

    async def wait_pause(self, paused: bool) -> bool:
        """Wait until the job's pause differs from ``paused`` (another worker paused or
        resumed it); return the new state. A local store's never changes by itself."""
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    @abc.abstractmethod
    async def open(self, input_name: str, fingerprint: str | None = None) -> JobState:
        """Open or create the job; refuse a journal that belongs to another input. A new
        job records the input's ``fingerprint`` (see ``Source.fingerprint``)."""

    async def describe(self, settings: Mapping[str, Any]) -> None:  # noqa: B027 - optional
        """Keep the run's ``settings`` (JSON-ready values) with the job, replacing an
        earlier run's, for ``shoal report``. A store that keeps nothing after the run (the
        memory store) need not keep them."""

    @abc.abstractmethod
    async def pending(self, after_seq: int, limit: int) -> list[Job]:
        """Unfinished jobs admitted by earlier runs, in admission order, after ``after_seq``."""

    @abc.abstractmethod
    async def defer(self, jobs: Sequence[Job]) -> None:
        """Keep admitted ``jobs`` out of memory for now, by host, until taken back."""

    @abc.abstractmethod
    async def take_deferred(self, host: str, limit: int) -> list[Job]:
        """Up to ``limit`` deferred jobs of ``host``, oldest first; they are deferred no more."""

    @abc.abstractmethod
    async def admit(self, entries: Sequence[Entry], position: Position) -> list[Job]:
        """Record new entries and the input position; return jobs for the ones not seen yet."""

    @abc.abstractmethod
    async def finish_input(self) -> None:
        """Record that the whole input has been admitted."""

    @abc.abstractmethod
    async def complete(
        self, done: Sequence[Completion], mark: SinkMark, *, budget: int | None = None
    ) -> Committed:
        """Commit final results and the current sink mark, and admit the follow-ups their
        jobs found (``job.found``) in the same transaction, while the job holds fewer than
        ``budget`` requests in all.

        An item whose result is :class:`Retrying` is not final: it records the attempts its
        job has made so far (a retry is coming), so a resumed run does not grant them again.
        """

    @abc.abstractmethod
    async def records_after(self, done_seq: int, limit: int) -> list[Record]:
        """Committed records after ``done_seq``, in commit order (to repair outputs)."""

    @abc.abstractmethod
    async def save_mark(self, mark: SinkMark) -> None:
        """Commit the sink mark alone (at shutdown, or after repairing outputs)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release the journal."""
