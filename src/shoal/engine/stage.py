"""What the stages of a run share: the plan of its work, and the engine's state that the
feeder (:mod:`.feeder`), the workers (:mod:`.workers`) and the committer
(:mod:`.committer`) read. Each stage is a part of :class:`shoal.Engine`, kept in a module
of its own.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.capture import Budget
from shoal.config import Crawl, Limits, RetryPolicy
from shoal.crawling import Frontier
from shoal.fetching import Robots, Task, Transport
from shoal.fetching.dns import CachingResolver, DNSStatistics
from shoal.job import Job
from shoal.outcome import Finished
from shoal.reporting import Recorder
from shoal.result import Result
from shoal.scheduling import HostRules, Scheduler, Shard
from shoal.sinks.bodies import BodyStore
from shoal.sources import Source
from shoal.store import Completion, Store

if TYPE_CHECKING:
    from shoal.sinks.warc import WarcArchive as Archive

#: A user's async callback, run on each final response inside the worker slot. It reads the
#: result (its body too), may return a JSON value kept as ``data``, or raise
#: :class:`shoal.Rejected` to fail the request (optionally retrying it first).
Handler = Callable[[Result], Awaitable[Any]]
#: What ``stream`` and ``run`` accept as requests.
Requests = Source | Iterable[Any] | AsyncIterable[Any]
#: Hands each committed result to a stream's reader.
Deliver = Callable[[Finished], Awaitable[None]]
#: The queue from the workers to the committer (``None``: the end of the run).
Completions = asyncio.Queue[Completion | None]

#: Input lines read and admitted at a time.
INPUT_BATCH = 512
#: Results committed in one transaction at most.
COMMIT_BATCH = 2048


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run's workers do with a job: the task, then (for a fetch) robots.txt
    before it and the handler after it; ``rules`` give each host (or group) its caps."""

    task: Task
    rules: HostRules
    robots: Robots | None = None
    handler: Handler | None = None
    #: Whether a shard of the job gets a part of each host's cap (the job's caps hold over
    #: all shards); not for a map without groups, whose one bucket each shard's own
    #: concurrency bounds.
    split_caps: bool = True


class Stage:
    """The engine's state the stages of a run read and change (set by the engine)."""

    limits: Limits
    retry: RetryPolicy
    crawl: Crawl
    _recorder: Recorder
    _frontier: Frontier
    _scheduler: Scheduler | None
    _store: Store | None
    _stopping: bool
    _paused: bool
    _shard: Shard | None
    _whole_hosts: bool
    _rng: random.Random
    _keep_body: bool
    _bodies: BodyStore | None
    _archive: Archive | None
    _archived: dict[str, int]
    _capture_budget: Budget
    _running: bool
    _pause_asked: bool
    _abortable: list[asyncio.Task[None]]
    _transport: Transport | None
    _task: Task | None
    _rules: HostRules
    _robots: Robots | None
    _handler: Handler | None
    _dns: CachingResolver | None
    _dns_at_start: DNSStatistics

    def _pause(self, paused: bool, *, share: bool) -> None:
        raise NotImplementedError

    def _description(self, output: str | None) -> dict[str, Any]:
        """The run's settings, as the journal keeps them (the engine's)."""
        raise NotImplementedError


async def hand_on(
    store: Store, scheduler: Scheduler, jobs: list[Job], *, within_capacity: bool = False
) -> None:
    """Add ``jobs`` to the scheduler, or defer to the store those it does not want now
    (and, ``within_capacity``, those past its capacity: a caller that cannot wait for room)."""
    deferred = []
    for job in jobs:
        if (scheduler.room or not within_capacity) and scheduler.wants(job):
            scheduler.add(job)
        else:
            deferred.append(job)
    if deferred:
        await store.defer(deferred)
        scheduler.deferred(deferred)


async def put(completions: Completions, item: Completion) -> None:
    try:
        completions.put_nowait(item)
    except asyncio.QueueFull:
        await completions.put(item)
