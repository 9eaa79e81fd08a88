"""The committer of a run: it commits final results to the store in batches (with the
follow-ups their handlers found), then writes the committed records to the outputs, then
counts them and delivers them to a stream's reader. A slow trickle of results lingers a
moment, so that it still commits in batches.
"""

from __future__ import annotations

import asyncio

from shoal.crawling import Frontier
from shoal.engine.flow import COMMIT_BATCH, Completions, Deliver, count_job
from shoal.reporting import Recorder
from shoal.scheduling import Scheduler, WorkSource
from shoal.sinks import Outputs
from shoal.sinks.artifacts import Artifacts
from shoal.store import Committed, Completion, Retrying, SinkMark, Store

#: Below this many results, the committer waits ``_LINGER_S`` for more before committing.
_SMALL_BATCH = 64
_LINGER_S = 0.02


class Committer:
    """Workers -> journal (the store) -> outputs -> the counts and a stream's reader."""

    def __init__(
        self,
        completions: Completions,
        store: Store,
        outputs: Outputs | None,
        *,
        mark: SinkMark,
        deliver: Deliver | None,
        scheduler: Scheduler,
        work_source: WorkSource,
        recorder: Recorder,
        frontier: Frontier,
        artifacts: Artifacts,
        max_requests: int | None,
    ) -> None:
        self._completions = completions
        self._store = store
        self._outputs = outputs
        self._mark = mark
        self._deliver = deliver
        self._scheduler = scheduler
        self._work_source = work_source
        self._recorder = recorder
        self._frontier = frontier
        self._artifacts = artifacts
        self._max_requests = max_requests

    async def commit(self) -> None:
        store, outputs, completions = self._store, self._outputs, self._completions
        recorder, artifacts, deliver = self._recorder, self._artifacts, self._deliver
        mark = self._mark
        ended = False
        while not ended:
            item = await completions.get()
            if item is None:
                break
            batch = [item]
            ended = _drain(completions, batch)
            if not ended and len(batch) < _SMALL_BATCH and self._scheduler.held > 0:
                # Few results are arriving while requests are still held (queued, in
                # flight or waiting to retry): wait a moment so a slow job still commits
                # in batches rather than once per request.
                await asyncio.sleep(_LINGER_S)
                ended = _drain(completions, batch)
            finals = [result for _, result in batch if not isinstance(result, Retrying)]
            await artifacts.commit(finals)
            committed = await store.complete(
                batch, artifacts.with_archive(mark), budget=self._max_requests
            )
            if committed.refused:  # their host's lease was lost: its next owner runs them
                finals = [
                    result
                    for job, result in batch
                    if not isinstance(result, Retrying) and job.seq not in committed.refused
                ]
            if outputs is not None:
                mark = await outputs.write(committed.records)
            await self._follow(batch, committed)
            for result in finals:
                recorder.add(result)
            count_job(recorder, store.counts)
            if deliver is not None:
                for result in finals:
                    await deliver(result)
        count_job(recorder, store.counts)
        if outputs is not None or artifacts.archived:
            await store.save_mark(artifacts.with_archive(mark))

    async def _follow(self, batch: list[Completion], committed: Committed) -> None:
        """Hand the follow-ups a commit admitted to the scheduler (or defer them to the
        store, never waiting for room: the workers wait on this task), then settle their
        parents' expectations."""
        scheduler = self._scheduler
        links = self._recorder.links
        links.admitted += len(committed.admitted)
        links.duplicate += committed.duplicate
        links.over_budget += committed.over_budget
        expected = waited = 0
        for job, result in batch:
            if not isinstance(result, Retrying) and job.found:
                waited += len(job.found)
                job.found = None
                expected += 1
        self._frontier.committed(waited)
        if committed.admitted and not scheduler.stopped:
            await self._work_source.hand_on(committed.admitted, within_capacity=True)
        if expected:
            scheduler.settled(expected)


def _drain(completions: Completions, batch: list[Completion]) -> bool:
    """Move what is queued into ``batch`` (up to a commit's worth); True at the end mark."""
    while len(batch) < COMMIT_BATCH:
        try:
            item = completions.get_nowait()
        except asyncio.QueueEmpty:
            return False
        if item is None:
            return True
        batch.append(item)
    return False
