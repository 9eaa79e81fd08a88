"""The committer of a run: it commits final results to the store in batches (with the
follow-ups their handlers found), then writes the committed records to the outputs, then
counts them and delivers them to a stream's reader. A slow trickle of results lingers a
moment, so that it still commits in batches.
"""

from __future__ import annotations

import asyncio

from shoal.engine.stage import COMMIT_BATCH, Completions, Deliver, Stage, hand_on
from shoal.fetched import Fetched
from shoal.sinks import Outputs
from shoal.store import Committed, Completion, Retrying, SinkMark, Store

#: Below this many results, the committer waits ``_LINGER_S`` for more before committing.
_SMALL_BATCH = 64
_LINGER_S = 0.02


class Committing(Stage):
    """The committer's part of the engine."""

    async def _commit(
        self,
        store: Store,
        outputs: Outputs | None,
        completions: Completions,
        mark: SinkMark,
        deliver: Deliver | None,
    ) -> None:
        recorder = self._recorder
        archive = self._archive
        ended = False
        while not ended:
            item = await completions.get()
            if item is None:
                break
            batch = [item]
            ended = _drain(completions, batch)
            if not ended and len(batch) < _SMALL_BATCH and self._more_coming():
                # Few results are arriving: wait a moment so a slow job still commits in
                # batches rather than once per request.
                await asyncio.sleep(_LINGER_S)
                ended = _drain(completions, batch)
            finals = [result for _, result in batch if not isinstance(result, Retrying)]
            if archive is not None:
                responses = [result for result in finals if isinstance(result, Fetched)]
                captures = [result.capture for result in responses if result.capture is not None]
                self._archived = await archive.append(responses)
                for capture in captures:
                    self._capture_budget.release(capture)
            committed = await store.complete(
                batch, self._with_archive(mark), budget=self.crawl.max_requests
            )
            if committed.refused:  # their host's lease was lost: its next owner runs them
                finals = [
                    result
                    for job, result in batch
                    if not isinstance(result, Retrying) and job.seq not in committed.refused
                ]
            if outputs is not None:
                mark = await outputs.write(committed.records)
            await self._follow(store, batch, committed)
            for result in finals:
                recorder.add(result)
            recorder.job_ok, recorder.job_failed = store.counts.ok, store.counts.failed
            if deliver is not None:
                for result in finals:
                    await deliver(result)
        recorder.job_ok, recorder.job_failed = store.counts.ok, store.counts.failed
        if outputs is not None or self._archived:
            await store.save_mark(self._with_archive(mark))

    async def _follow(self, store: Store, batch: list[Completion], committed: Committed) -> None:
        """Hand the follow-ups a commit admitted to the scheduler (or defer them to the
        store, never waiting for room: the workers wait on this task), then settle their
        parents' expectations."""
        scheduler = self._scheduler
        assert scheduler is not None
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
            recorder = self._recorder
            if recorder.total is not None and not recorder.total_is_estimate:
                recorder.total = store.counts.admitted
            await hand_on(store, scheduler, committed.admitted, within_capacity=True)
        if expected:
            scheduler.settled(expected)

    def _more_coming(self) -> bool:
        """Whether requests are still held (queued, in flight or waiting to retry): with
        none, lingering for more results would only delay the end of the job."""
        scheduler = self._scheduler
        return scheduler is None or scheduler.held > 0

    async def _end_commits(
        self,
        feeder: asyncio.Task[None],
        workers: list[asyncio.Task[None]],
        helpers: list[asyncio.Task[None] | None],
        completions: Completions,
    ) -> None:
        await asyncio.wait([feeder, *workers])
        for helper in helpers:
            if helper is not None:
                helper.cancel()
        await completions.put(None)

    def _with_archive(self, mark: SinkMark) -> SinkMark:
        """``mark`` with the archive's end added (committed with it, see :mod:`.warc`)."""
        if not self._archived:
            return mark
        return SinkMark(mark.done_seq, {**mark.positions, **self._archived})


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
