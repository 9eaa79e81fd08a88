"""The feeder of a run: it reads the input in batches, admits each batch to the store
(which drops duplicates and remembers the input position) and hands the new jobs to the
scheduler through the run's work source (:mod:`shoal.scheduling.work`), waiting whenever
the scheduler holds enough. It also estimates the input's size.
"""

from __future__ import annotations

from shoal.engine.flow import INPUT_BATCH, Completions, Controls, count_job
from shoal.job import Job
from shoal.reporting import Recorder
from shoal.scheduling import Scheduler, WorkSource
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
        work: WorkSource,
        recorder: Recorder,
        controls: Controls,
    ) -> None:
        self._source = source
        self._store = store
        self._state = state
        self._scheduler = scheduler
        self._completions = completions
        self._work = work
        self._recorder = recorder
        self._controls = controls

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
                await self.dispatch(jobs)
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
                entries = self._work.owned(entries)
                jobs = await store.admit(entries, source.position)
                recorder.duplicates += len(entries) - len(jobs)
                if self._work.runs_admitted:  # (else they come in the work source's rounds)
                    await self.dispatch(jobs)
        scheduler.close()  # workers end once nothing is held, deferred or expected

    async def dispatch(self, jobs: list[Job]) -> None:
        """Hand admitted (or claimed) jobs on; a job already failed (a bad line) goes
        straight to the committer."""
        scheduler, completions = self._scheduler, self._completions
        valid = []
        for job in jobs:
            if job.error is not None:
                await completions.put((job, job.failed(job.error)))
            else:
                valid.append(job)
        await self._work.hand_on(valid)
        await scheduler.wait_room()

    async def estimate_total(self) -> None:
        estimate = await self._source.wait_total()
        recorder = self._recorder
        if estimate is not None and recorder.total is None:
            recorder.total = max(estimate, recorder.skipped)
            recorder.total_is_estimate = True
