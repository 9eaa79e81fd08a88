"""What passes between the stages of a run: the queue of completions from the workers to
the committer, the user's controls, and the one place the run's counts take the job's
from the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shoal.outcome import Finished
from shoal.reporting import Recorder
from shoal.store import Completion, JobCounts

#: Hands each committed result to a stream's reader.
Deliver = Callable[[Finished], Awaitable[None]]
#: The queue from the workers to the committer (``None``: the end of the run).
Completions = asyncio.Queue[Completion | None]

#: Input lines read and admitted at a time.
INPUT_BATCH = 512
#: Results committed in one transaction at most.
COMMIT_BATCH = 2048


@dataclass(slots=True)
class Controls:
    """What the user asked of the engine (:meth:`shoal.Engine.stop`, ``pause``): set by
    the engine, read by its runs."""

    #: Take no new work (asked during a run, or before it: the run then ends at once).
    stopping: bool = False
    paused: bool = False
    #: A pause asked for before the run (pushed to a shared store's job as it starts).
    pause_asked: bool = False


@dataclass(frozen=True, slots=True)
class JobTotals:
    """The counts of the whole job a run's statistics show (see :func:`job_totals`)."""

    total: int | None
    total_is_estimate: bool
    job_ok: int
    job_failed: int


def job_totals(recorder: Recorder, counts: JobCounts, *, input_done: bool = False) -> JobTotals:
    """The job's counts as the store has them now, over the recorder's: its ok and failed,
    and its total once that is known exactly (the input all read; ``input_done``: it is
    now). The one place a run's counts are taken from the store's."""
    total, estimate = recorder.total, recorder.total_is_estimate
    if input_done:
        total, estimate = counts.admitted, False
    elif total is not None and not estimate:
        total = counts.admitted
    return JobTotals(total, estimate, counts.ok, counts.failed)


def count_job(recorder: Recorder, counts: JobCounts, *, input_done: bool = False) -> None:
    """Write :func:`job_totals` into the recorder."""
    totals = job_totals(recorder, counts, input_done=input_done)
    recorder.total, recorder.total_is_estimate = totals.total, totals.total_is_estimate
    recorder.job_ok, recorder.job_failed = totals.job_ok, totals.job_failed


async def put(completions: Completions, item: Completion) -> None:
    try:
        completions.put_nowait(item)
    except asyncio.QueueFull:
        await completions.put(item)
