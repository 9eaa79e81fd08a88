"""A worker of a run (a run has ``concurrency`` of them, each its own task): it takes
jobs from the scheduler and runs one attempt at a time (the task: an HTTP fetch by
default, or a mapped call), after robots.txt and before the user's handler; then the job
goes back to the scheduler for a retry, or its final result to the committer.
"""

from __future__ import annotations

import asyncio
import logging
import random

import orjson

from shoal.config import RetryPolicy
from shoal.crawling import Frontier
from shoal.engine.flow import Completions, put
from shoal.engine.tasks import Handler, Work
from shoal.errors import Rejected
from shoal.job import Job
from shoal.outcome import Finished
from shoal.reporting import Recorder
from shoal.request import Request
from shoal.result import Error, ErrorKind, Result
from shoal.scheduling import Scheduler, WorkSource, retry_delay
from shoal.sinks.artifacts import Artifacts
from shoal.store import Retrying

log = logging.getLogger("shoal")


class Worker:
    """Scheduler -> one attempt (the task) -> the scheduler again for a retry, or the
    committer with the final result."""

    def __init__(
        self,
        scheduler: Scheduler,
        completions: Completions,
        work: Work,
        *,
        work_source: WorkSource,
        retry: RetryPolicy,
        rng: random.Random,
        recorder: Recorder,
        frontier: Frontier,
        artifacts: Artifacts,
        keep_body: bool,
    ) -> None:
        self._scheduler = scheduler
        self._completions = completions
        self._work = work
        self._work_source = work_source
        self._retry = retry
        self._rng = rng
        self._recorder = recorder
        self._frontier = frontier
        self._artifacts = artifacts
        self._keep_body = keep_body

    async def work(self) -> None:
        scheduler, completions = self._scheduler, self._completions
        task = self._work.task
        policy = self._retry
        rng = self._rng
        robots = self._work.robots
        # (A shared store's host lease: past it, nothing more is sent to the host.)
        holds, let_go = self._work_source.holds, self._work_source.let_go
        result: Finished
        while (job := await scheduler.wait_job()) is not None:
            if not holds(job):
                scheduler.release(job)
                scheduler.finish(job)
                let_go([job])
                continue
            refusal = scheduler.refusal(job)
            if refusal is None and robots is not None:
                try:
                    refusal = await robots.check(job)  # in the host's slot
                except BaseException:
                    scheduler.release(job)
                    raise
                scheduler.verified(job.host)
            if refusal is not None:  # not sent: its host was given up, or robots.txt
                scheduler.release(job)
                if refusal.retry:
                    job.attempts += 1  # robots.txt could not be read: try again later
                result = job.failed(refusal)
                delay = retry_delay(policy, result, rng) if refusal.retry else None
            else:
                job.attempts += 1
                try:
                    result = await task.run(job)
                except BaseException:
                    scheduler.release(job)
                    raise
                scheduler.release(job, result)
                delay = retry_delay(policy, result, rng)
            if isinstance(result, Result):  # a response: handled, its body kept or not
                delay = await self._after_fetch(job, result, delay)
            if delay is not None:
                # The attempts so far go to the journal, so a resumed run honours the budget.
                await put(completions, (job, Retrying(job.attempts)))
                # Once stopped, the job is let go: it stays pending for the next run.
                if scheduler.retry_later(job, delay):
                    self._recorder.retries += 1
                    decision = f"retry in {delay:.3f} s"
                else:
                    let_go([job])
                    decision = "stopping: left pending"
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(_attempt_line(job, result, refusal is not None, decision))
                continue
            if log.isEnabledFor(logging.DEBUG):
                log.debug(_attempt_line(job, result, refusal is not None, "final"))
            await put(completions, (job, result))
            scheduler.finish(job)

    async def _after_fetch(self, job: Job, result: Result, delay: float | None) -> float | None:
        """Run the handler on a final response, settle its saved body and capture, and
        gather its follow-ups; the wait before a retry (``None``: final)."""
        handler = self._work.handler
        if delay is None and handler is not None and result.error is None:
            await _handle(handler, result)
            if not self._keep_body:
                result.body = None
            if result.error is not None:
                delay = retry_delay(self._retry, result, self._rng)
        if self._artifacts.unsettled(result):
            await self._artifacts.settle(result, final=delay is None)
        if result.follow_ups is not None:
            if delay is None and result.error is None:
                await self._frontier.wait_room()
                job.found = self._frontier.entries(job, result.follow_ups)
                if job.found:
                    self._scheduler.expect()  # settled once the committer has admitted them
            result.follow_ups = None
        return delay


def _attempt_line(job: Job, result: Finished, refused: bool, decision: str) -> str:
    """The debug log's line for one attempt: what, which attempt, how it ended, how long
    it took, and what happens next."""
    work = job.work
    what = f"{work.method} {work.url}" if isinstance(work, Request) else f"item {work.key}"
    if refused:
        ended = "not sent"
    elif isinstance(result, Result) and result.status is not None:
        ended = str(result.status)
    else:
        ended = "no response"
    error = result.error
    if error is not None:
        ended += f" ({error.kind.value}: {error.message})"
    took = "" if result.elapsed_ms is None or refused else f" in {result.elapsed_ms:.1f} ms"
    return f"attempt {job.attempts} {what}: {ended}{took}; {decision}"


async def _handle(handler: Handler, result: Result) -> None:
    """Run the user's handler on a response; its failure is that request's failure."""
    try:
        data = await handler(result)
        if data is not None:
            orjson.dumps(data)
    except Rejected as exc:
        result.error = Error(ErrorKind.HANDLER, exc.message, retry=exc.retry)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a handler's bug fails its request, not the run
        result.error = Error(ErrorKind.HANDLER, f"{type(exc).__name__}: {exc}")
    else:
        result.data = data
