"""The feeder of a run: it reads the input in batches, admits each batch to the store
(which drops duplicates and remembers the input position) and hands the new jobs to the
scheduler through the run's work source (:mod:`shoal.scheduling.work`), waiting whenever
the scheduler holds enough; it also follows the job's pause (another worker of a shared job
paused it).
"""

from __future__ import annotations

from shoal.engine.stage import INPUT_BATCH, Completions, Stage
from shoal.job import Job
from shoal.scheduling import Scheduler, WorkSource
from shoal.sources import Source
from shoal.store import JobState, Store


class Feeding(Stage):
    """The feeder's part of the engine."""

    async def _feed(
        self,
        source: Source,
        store: Store,
        work: WorkSource,
        state: JobState,
        scheduler: Scheduler,
        completions: Completions,
    ) -> None:
        recorder = self._recorder
        if state.resumed:
            after = 0
            while not self._stopping and after < state.last_seq:
                # (Follow-ups admitted since the run began are the committer's to hand on.)
                jobs = [
                    job
                    for job in await store.pending(after, INPUT_BATCH)
                    if job.seq <= state.last_seq
                ]
                if not jobs:
                    break
                after = jobs[-1].seq
                await self._dispatch(jobs, work, scheduler, completions)
        if not state.input_done:
            while not self._stopping:
                before = source.position
                entries = await source.read_batch(INPUT_BATCH)
                if entries == [] and source.position == before:
                    continue  # a quiet input: nothing to admit yet
                if entries is None:
                    await store.finish_input()
                    recorder.total = store.counts.admitted
                    recorder.total_is_estimate = False
                    break
                entries = work.owned(entries)
                jobs = await store.admit(entries, source.position)
                recorder.duplicates += len(entries) - len(jobs)
                if work.runs_admitted:  # (else they come in the work source's rounds)
                    await self._dispatch(jobs, work, scheduler, completions)
        scheduler.close()  # workers end once nothing is held, deferred or expected

    async def _dispatch(
        self,
        jobs: list[Job],
        work: WorkSource,
        scheduler: Scheduler,
        completions: Completions,
    ) -> None:
        valid = []
        for job in jobs:
            if job.error is not None:
                await completions.put((job, job.failed(job.error)))
            else:
                valid.append(job)
        await work.hand_on(valid)
        await scheduler.wait_room()

    async def _follow_pause(self, store: Store) -> None:
        """Pause and resume as the job does (another worker of a shared job paused it)."""
        while True:
            self._pause(await store.wait_pause(self._paused), share=False)

    async def _estimate_total(self, source: Source) -> None:
        estimate = await source.wait_total()
        recorder = self._recorder
        if estimate is not None and recorder.total is None:
            recorder.total = max(estimate, recorder.skipped)
            recorder.total_is_estimate = True
