"""The local work source: a run's own jobs, in admission order, its hosts' backlogs deferred.

The jobs a run admits are its to run. Each goes to the scheduler unless its host already
has :data:`~shoal.scheduling.scheduler.HOST_QUEUE` jobs queued (and cannot keep every worker
busy alone), or has older jobs waiting in the store: then it is deferred to the store, so a
host with a huge backlog cannot fill the scheduler and keep the input's other hosts from
being read. A host's deferred jobs come back, oldest first, as its queue runs low.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from shoal.job import Entry, Job
from shoal.scheduling.queues import HostCap
from shoal.scheduling.rules import HostRules
from shoal.scheduling.scheduler import HOST_QUEUE, LOW_QUEUE, Scheduler
from shoal.store.store import Store

#: Hands a round's jobs to the run (failing the invalid ones, adding the rest).
Dispatch = Callable[[list[Job]], Awaitable[None]]


class LocalWork:
    """Work from admission: see the module's docstring and :class:`.work.WorkSource`."""

    #: A finished input that has grown since is read on.
    reopens_input = True
    #: The jobs this run admits are its own to run.
    runs_admitted = True

    def __init__(self, store: Store) -> None:
        self._store = store
        self._scheduler: Scheduler | None = None
        #: Hosts with jobs in the store, and how many.
        self._deferred: dict[str, int] = {}
        #: Hosts whose queues ran low while they have jobs in the store.
        self._hungry: set[str] = set()
        self._refill = asyncio.Event()

    def check_output(self, output: str | None) -> None:
        """A local run writes its own records: any output will do."""

    def host_cap(self, split: bool) -> HostCap | None:
        """This run's part of each host's cap (``None``: the whole)."""
        return None

    def start(self, scheduler: Scheduler, rules: HostRules) -> None:
        """The run's stages are built: jobs go to ``scheduler``."""
        self._scheduler = scheduler

    def owned(self, entries: list[Entry]) -> list[Entry]:
        """The entries of a batch read that this run admits: all of them."""
        return entries

    async def hand_on(self, jobs: list[Job], *, within_capacity: bool = False) -> None:
        """Add ``jobs`` to the scheduler, or defer to the store those it does not want now
        (and, ``within_capacity``, those past its capacity: a caller that cannot wait for
        room)."""
        scheduler = self._scheduler
        assert scheduler is not None
        deferred = []
        waiting = self._deferred
        for job in jobs:
            if (
                (scheduler.room or not within_capacity)
                and not (waiting and job.host in waiting)  # its older jobs wait: keep order
                and scheduler.wants(job)
            ):
                scheduler.add(job)
            else:
                deferred.append(job)
        if deferred:
            await self._store.defer(deferred)
            self._count(scheduler, deferred)

    async def run_rounds(self, dispatch: Dispatch) -> None:
        """A local run has no rounds: its work comes from admission."""

    async def take_back(self) -> None:
        """Bring deferred jobs back for the hosts whose queues run low, all run long (its
        own task, so the input is read on meanwhile)."""
        scheduler = self._scheduler
        assert scheduler is not None
        while True:
            await self._refill.wait()
            for host, room in self._wanted(scheduler):
                self._took(scheduler, host, room, await self._store.take_deferred(host, room))

    def holds(self, job: Job) -> bool:
        """Whether ``job`` may still be sent here: always."""
        return True

    def let_go(self, jobs: Sequence[Job]) -> None:
        """``jobs`` will not run again in this run: they stay pending in the journal."""
        self._store.let_go(jobs)

    # -- inside ------------------------------------------------------------------------------

    def _count(self, scheduler: Scheduler, jobs: list[Job]) -> None:
        """``jobs`` were deferred to the store: a host with jobs there keeps the workers
        from ending (:meth:`Scheduler.expect`) until the store has no more of them."""
        counts = self._deferred
        if not counts:
            scheduler.watch_queues(self._ran_low)
        for job in jobs:
            count = counts.get(job.host)
            if count is None:
                scheduler.expect()
                count = 0
            counts[job.host] = count + 1
            if scheduler.queued(job.host) <= LOW_QUEUE:
                self._hungry.add(job.host)
        if self._hungry:
            self._refill.set()

    def _ran_low(self, host: str) -> None:
        if host in self._deferred:
            self._hungry.add(host)
            self._refill.set()

    def _wanted(self, scheduler: Scheduler) -> list[tuple[str, int]]:
        """Hosts whose queues ran low while they have deferred jobs, and how many to take."""
        wanted = []
        for name in self._hungry:
            room = HOST_QUEUE - scheduler.queued(name)
            if room > 0 and name in self._deferred:
                wanted.append((name, room))
        self._hungry.clear()
        self._refill.clear()
        return wanted

    def _took(self, scheduler: Scheduler, name: str, asked: int, jobs: list[Job]) -> None:
        """``jobs`` of host ``name`` came back from the store (``asked`` were asked for)."""
        count = self._deferred.get(name)
        left = (count or 0) - len(jobs)
        done = left <= 0 or len(jobs) < asked  # the store has no more of them
        if done:
            self._deferred.pop(name, None)
            if not self._deferred:
                scheduler.watch_queues(None)
        else:
            self._deferred[name] = left
        for job in jobs:
            scheduler.add(job)
        if done:
            if count is not None:  # (once its jobs are added: the workers may be done)
                scheduler.settled()
        elif scheduler.queued(name) <= LOW_QUEUE:
            self._hungry.add(name)  # it drained while the store was asked
            self._refill.set()
