"""The feeder of a run: it reads the input in batches, admits each batch to the store
(which drops duplicates and remembers the input position) and hands the new jobs to the
scheduler, waiting whenever the scheduler holds enough. On a shared store it takes its
work from the store's claims instead (the hosts this worker holds). It also brings back
jobs deferred to the store as their hosts' queues run low, and estimates the input's size.
"""

from __future__ import annotations

from shoal.engine.flow import INPUT_BATCH, Completions, Controls, count_job, hand_on
from shoal.job import Entry, Job
from shoal.reporting import Recorder
from shoal.scheduling import HostRules, Scheduler, Shard
from shoal.sources import Source
from shoal.store import JobState, Store


class Feeder:
    """Source -> store -> scheduler (and, for a line that is not a valid request, its
    failure straight to the committer)."""

    def __init__(
        self,
        source: Source,
        store: Store,
        state: JobState,
        scheduler: Scheduler,
        completions: Completions,
        *,
        rules: HostRules,
        recorder: Recorder,
        controls: Controls,
        shard: Shard | None,
        whole_hosts: bool,
    ) -> None:
        self._source = source
        self._store = store
        self._state = state
        self._scheduler = scheduler
        self._completions = completions
        self._rules = rules
        self._recorder = recorder
        self._controls = controls
        self._shard = shard
        self._whole_hosts = whole_hosts

    async def feed(self) -> None:
        source, store, state, scheduler = self._source, self._store, self._state, self._scheduler
        recorder, controls = self._recorder, self._controls
        if state.resumed:
            after = 0
            while not controls.stopping and after < state.last_seq:
                # (Follow-ups admitted since the run began are the committer's to hand on.)
                jobs = [
                    job
                    for job in await store.pending(after, INPUT_BATCH)
                    if job.seq <= state.last_seq
                ]
                if not jobs:
                    break
                after = jobs[-1].seq
                await self._dispatch(jobs)
        if not state.input_done:
            while not controls.stopping:
                before = source.position
                entries = await source.read_batch(INPUT_BATCH)
                if entries == [] and source.position == before:
                    continue  # a quiet input: nothing to admit yet
                if entries is None:
                    await store.finish_input()
                    count_job(recorder, store.counts, input_done=True)
                    break
                if self._shard is not None:
                    entries = self._own_entries(entries)
                jobs = await store.admit(entries, source.position)
                recorder.duplicates += len(entries) - len(jobs)
                if not store.leases:  # (a shared store hands out every job by its host)
                    await self._dispatch(jobs)
        scheduler.close()  # workers end once nothing is held, deferred or expected

    def _own_entries(self, entries: list[Entry]) -> list[Entry]:
        """The entries this engine's shard handles (each host's rule decides its spread)."""
        shard = self._shard
        assert shard is not None
        owned = []
        for entry in entries:
            host = entry.host
            if host is None:
                mine = shard.owns(entry)
            else:
                rule = self._rules.for_host(host)
                whole = rule.paced or self._whole_hosts
                mine = shard.owns(entry, rule.max_in_flight, paced=whole)
            if mine:
                owned.append(entry)
        return owned

    async def _dispatch(self, jobs: list[Job]) -> None:
        store, scheduler, completions = self._store, self._scheduler, self._completions
        valid = []
        for job in jobs:
            if job.error is not None:
                await completions.put((job, job.failed(job.error)))
            else:
                valid.append(job)
        await hand_on(store, scheduler, valid)
        await scheduler.wait_room()

    async def claim(self) -> None:
        """Take work from a shared store, round after round, until it has none left for
        this worker: the jobs of the hosts it holds, and the hosts it takes over (with the
        pace they carry) or must give up."""
        store, scheduler = self._store, self._scheduler
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
                    await self._dispatch(claim.jobs)
        finally:
            scheduler.settled()

    async def refill(self) -> None:
        """Bring deferred jobs back for the hosts whose queues run low, all run long (its
        own task, so the input is read on meanwhile)."""
        store, scheduler = self._store, self._scheduler
        while True:
            await scheduler.wait_hungry()
            for host, room in scheduler.hungry():
                scheduler.took(host, room, await store.take_deferred(host, room))

    async def estimate_total(self) -> None:
        estimate = await self._source.wait_total()
        recorder = self._recorder
        if estimate is not None and recorder.total is None:
            recorder.total = max(estimate, recorder.skipped)
            recorder.total_is_estimate = True
