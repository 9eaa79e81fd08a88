"""The work source of a shared job's worker: host leases (the PostgreSQL store).

Many workers run one job, and a worker runs only the jobs of the hosts it holds a lease
on. The jobs a run admits are not its own: every job comes from the store's claims, round
after round (:meth:`shoal.store.Store.claim`), with the hosts the worker takes over (and the
pace each carries) or must give up. Before each attempt the lease is asked again
(:meth:`shoal.store.Store.holds`): past it, nothing more is sent to the host. Within the
hosts it holds, a worker's jobs go through the local source's order and deferral.

This is an adapter over the store's public methods; the store keeps the leases.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoal.errors import ConfigError
from shoal.job import Entry, Job
from shoal.scheduling.backlog import Dispatch, LocalWork
from shoal.scheduling.queues import HostCap
from shoal.scheduling.rules import HostRules
from shoal.scheduling.scheduler import Scheduler
from shoal.store.store import Store


class LeasedWork:
    """A shared job's worker: see the module's docstring and :class:`.work.WorkSource`.
    ``hosts`` orders and defers the jobs of the hosts held."""

    #: A shared job's workers end once its input is done: it is not read again.
    reopens_input = False
    #: The jobs this run admits go out by host, in the store's claims.
    runs_admitted = False

    def __init__(self, store: Store, hosts: LocalWork) -> None:
        self._store = store
        self._hosts = hosts
        self._scheduler: Scheduler | None = None

    def check_output(self, output: str | None) -> None:
        """A shared job's records are written out from the store, not by each worker."""
        if output is not None:
            raise ConfigError(
                "output",
                "a job on a shared store is written out once it is complete, from the"
                " store (shoal export), not by each worker",
            )

    def host_cap(self, split: bool) -> HostCap | None:
        return self._hosts.host_cap(split)

    def start(self, scheduler: Scheduler, rules: HostRules) -> None:
        """The run's stages are built: the work may grow until the store says it is done
        (:meth:`run_rounds` settles that)."""
        self._hosts.start(scheduler, rules)
        self._scheduler = scheduler
        scheduler.expect()

    def owned(self, entries: list[Entry]) -> list[Entry]:
        return self._hosts.owned(entries)

    async def hand_on(self, jobs: list[Job], *, within_capacity: bool = False) -> None:
        await self._hosts.hand_on(jobs, within_capacity=within_capacity)

    async def run_rounds(self, dispatch: Dispatch) -> None:
        """Take work from the store, round after round, until it has none left for this
        worker: the jobs of the hosts it holds, and the hosts it takes over (with the pace
        they carry) or must give up."""
        scheduler = self._scheduler
        assert scheduler is not None
        store = self._store
        try:
            while not scheduler.stopped:
                await scheduler.wait_room()
                claim = await store.claim(scheduler.free, scheduler.pace_of)
                if claim is None:
                    break
                for host in claim.drop:
                    store.let_go(scheduler.drop_host(host))
                for host, pace in claim.acquired.items():
                    scheduler.take_over(host, pace)
                if claim.jobs:
                    await dispatch(claim.jobs)
        finally:
            scheduler.settled()

    async def take_back(self) -> None:
        await self._hosts.take_back()

    def holds(self, job: Job) -> bool:
        """Whether this worker may still send ``job``: its host's lease is valid now."""
        return self._store.holds(job)

    def let_go(self, jobs: Sequence[Job]) -> None:
        """``jobs`` will not run here: they stay pending for their host's next owner."""
        self._store.let_go(jobs)
