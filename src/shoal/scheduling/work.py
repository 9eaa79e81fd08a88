"""The work source: who may run what next, for one run.

The journal records; the work source decides which of its jobs this run runs and when they
go to the scheduler (compare crawlee's ``RequestQueue.fetch_next_request`` and
``reclaim_request``, StormCrawler's URLFrontier ``GetURLs``/``PutURLs``). Three kinds:

* :class:`~.backlog.LocalWork`: the run's own jobs in admission order, a host's backlog
  deferred to the store and taken back as its queue drains;
* :class:`~.shards.ShardedWork`: one shard of a job run by ``--processes``: its part of
  the input, with its part of each host's cap;
* :class:`~.leases.LeasedWork`: a shared job's worker, whose jobs come from the store's
  host leases, round after round.

The kind is chosen once, when the run starts (:func:`work_source`); the engine then calls
the source and never asks which store it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shoal.job import Entry, Job
from shoal.scheduling.backlog import Dispatch, LocalWork
from shoal.scheduling.leases import LeasedWork
from shoal.scheduling.queues import HostCap
from shoal.scheduling.rules import HostRules
from shoal.scheduling.scheduler import Scheduler
from shoal.scheduling.shards import Shard, ShardedWork
from shoal.store.store import Store


class WorkSource(Protocol):
    """Who may run what next (see the module's docstring)."""

    @property
    def reopens_input(self) -> bool:
        """Whether a finished input that has grown since is read on."""

    @property
    def runs_admitted(self) -> bool:
        """Whether the jobs this run admits are its own to run (else they come in rounds)."""

    def check_output(self, output: str | None) -> None:
        """Refuse an ``output`` this kind of run cannot write (a usage error)."""

    def host_cap(self, split: bool) -> HostCap | None:
        """This run's part of each host's cap, for the scheduler (``None``: the whole);
        ``split`` says whether caps are split at all (not for a map without groups)."""

    def start(self, scheduler: Scheduler, rules: HostRules) -> None:
        """The run's stages are built: jobs go to ``scheduler``; ``rules`` are its hosts'."""

    def owned(self, entries: list[Entry]) -> list[Entry]:
        """The entries of a batch read that this run admits."""

    async def hand_on(self, jobs: list[Job], *, within_capacity: bool = False) -> None:
        """Admitted (or claimed) ``jobs`` go to the scheduler, or wait in the store for
        now ("defer"); ``within_capacity``: the caller cannot wait for room."""

    async def run_rounds(self, dispatch: Dispatch) -> None:
        """Take the next round of work, and the next, handing each round's jobs to
        ``dispatch``, until there is none left for this run ("next round")."""

    async def take_back(self) -> None:
        """Bring deferred jobs back as their hosts' queues run low, all run long ("take
        back")."""

    def holds(self, job: Job) -> bool:
        """Whether this run may still send ``job`` (asked before each attempt)."""

    def let_go(self, jobs: Sequence[Job]) -> None:
        """``jobs`` will not run again in this run: they stay pending for whoever runs
        them next ("let go")."""


def work_source(store: Store, shard: Shard | None, *, whole_hosts: bool) -> WorkSource:
    """The work source of a run on ``store`` (of ``shard``, for ``--processes``); a crawl's
    shard owns each of its hosts whole (``whole_hosts``). A store that leases hosts
    (:attr:`shoal.store.Store.leases`) hands out the work itself."""
    local = (
        LocalWork(store) if shard is None else ShardedWork(store, shard, whole_hosts=whole_hosts)
    )
    return LeasedWork(store, local) if store.leases else local
