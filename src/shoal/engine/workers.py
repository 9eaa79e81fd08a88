"""The workers of a run: ``concurrency`` tasks, each taking jobs from the scheduler and
running one attempt at a time (the task: an HTTP fetch by default, or a mapped call),
after robots.txt and before the user's handler; then the job goes back to the scheduler
for a retry, or its final result to the committer.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from shoal.engine.stage import Completions, Handler, Plan, Stage, put
from shoal.errors import Rejected
from shoal.fetched import Fetched
from shoal.job import Job
from shoal.outcome import Finished
from shoal.request import Request
from shoal.result import Error, ErrorKind, Result
from shoal.scheduling import Scheduler, retry_delay
from shoal.store import Retrying

log = logging.getLogger("shoal")


class Working(Stage):
    """The workers' part of the engine."""

    async def _work(self, scheduler: Scheduler, completions: Completions, plan: Plan) -> None:
        task = plan.task
        policy = self.retry
        rng = self._rng
        handler = plan.handler
        robots = plan.robots
        # A shared store's host leases: past its lease, nothing more is sent to a host.
        holds = self._store.holds if self._store is not None and self._store.leases else None
        result: Finished
        while (job := await scheduler.wait_job()) is not None:
            if holds is not None and not holds(job):
                scheduler.release(job)
                scheduler.finish(job)
                self._let_go(job)
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
                delay = await self._after_fetch(job, result, delay, handler, scheduler)
            if delay is not None:
                # The attempts so far go to the journal, so a resumed run honours the budget.
                await put(completions, (job, Retrying(job.attempts)))
                # Once stopped, the job is let go: it stays pending for the next run.
                if scheduler.retry_later(job, delay):
                    self._recorder.retries += 1
                    decision = f"retry in {delay:.3f} s"
                else:
                    self._let_go(job)
                    decision = "stopping: left pending"
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(_attempt_line(job, result, refusal is not None, decision))
                continue
            if log.isEnabledFor(logging.DEBUG):
                log.debug(_attempt_line(job, result, refusal is not None, "final"))
            await self._final(scheduler, completions, job, result)

    def _let_go(self, job: Job) -> None:
        """``job`` will not run again in this run: it stays pending in the journal."""
        if self._store is not None:
            self._store.let_go([job])

    async def _after_fetch(
        self,
        job: Job,
        result: Result,
        delay: float | None,
        handler: Handler | None,
        scheduler: Scheduler,
    ) -> float | None:
        """Run the handler on a final response, settle its saved body and capture, and
        gather its follow-ups; the wait before a retry (``None``: final)."""
        if delay is None and handler is not None and result.error is None:
            await _handle(handler, result)
            if not self._keep_body:
                result.body = None
            if result.error is not None:
                delay = retry_delay(self.retry, result, self._rng)
        if isinstance(result, Fetched):
            if result.body_file is not None:
                await self._settle_body(result, final=delay is None)
            if result.capture is not None and delay is not None:
                await self._drop_capture(result)
        if result.follow_ups is not None:
            if delay is None and result.error is None:
                await self._frontier.wait_room()
                job.found = self._frontier.entries(job, result.follow_ups)
                if job.found:
                    scheduler.expect()  # settled once the committer has admitted them
            result.follow_ups = None
        return delay

    async def _settle_body(self, result: Fetched, *, final: bool) -> None:
        """Keep a final response's saved body (in place, by its SHA-256), or drop it."""
        bodies, path = self._bodies, result.body_file
        assert bodies is not None and path is not None
        result.body_file = None
        if final and result.sha256 is not None:
            result.body_path = await bodies.keep(path, result.sha256)
        else:
            await bodies.discard(path)

    async def _drop_capture(self, result: Fetched) -> None:
        """Forget the exchanges of an attempt that will be retried (only the final one is
        archived)."""
        capture, archive = result.capture, self._archive
        assert capture is not None and archive is not None
        result.capture = None
        self._capture_budget.release(capture)
        for path in capture.spools:
            await archive.spool.discard(path)

    @staticmethod
    async def _final(
        scheduler: Scheduler,
        completions: Completions,
        job: Job,
        result: Finished,
    ) -> None:
        await put(completions, (job, result))
        scheduler.finish(job)


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
