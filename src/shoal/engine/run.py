"""One run of a job, from start to end: its store opened (and the input checked against
it), its outputs brought up to the journal, then its stages — a :class:`.Feeder`,
``concurrency`` :class:`.Worker` s and a :class:`.Committer`, each built with what it uses
— wired in one :class:`asyncio.TaskGroup` until the work is done or stopped, and what it
opened closed through one :class:`contextlib.AsyncExitStack` whatever happened."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sys
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Mapping
from typing import Any

from shoal.config import Crawl, Limits, RetryPolicy
from shoal.crawling import Frontier
from shoal.engine.committer import Committer
from shoal.engine.feeder import Feeder
from shoal.engine.flow import (
    COMMIT_BATCH,
    INPUT_BATCH,
    Completions,
    Controls,
    Deliver,
    count_job,
    job_totals,
)
from shoal.engine.tasks import Work
from shoal.engine.worker import Worker
from shoal.errors import JournalError, ShoalError
from shoal.fetching.dns import DNSStatistics
from shoal.reporting import Recorder, Statistics
from shoal.scheduling import HostState, Scheduler, Shard, WorkSource, work_source
from shoal.sinks import JsonlSink, Outputs, StreamSink
from shoal.sinks.artifacts import Artifacts
from shoal.sources import Source
from shoal.store import JobState, MemoryStore, SinkMark, SQLiteStore, Store

#: What ``stream`` and ``run`` accept as requests.
Requests = Source | Iterable[Any] | AsyncIterable[Any]

#: The tasks :meth:`Run.stop` cancels: the feeder may be waiting for input slow to come.
FEEDER = "feeder"
#: The prefix of the workers' task names (``worker-0``…), cancelled by :meth:`Run.abort`.
WORKER = "worker-"


class Run:
    """One job's run on an engine: what it reads of the engine, and the state it keeps
    (its recorder, scheduler and store, read by the engine's statistics and controls)."""

    def __init__(
        self,
        source: Source,
        journal: str | Store | None,
        output: str | None,
        deliver: Deliver | None,
        work: Work,
        *,
        recorder: Recorder,
        controls: Controls,
        follow_pause: Callable[[bool], None],
        description: Mapping[str, Any],
        artifacts: Artifacts,
        limits: Limits,
        retry: RetryPolicy,
        crawl: Crawl,
        shard: Shard | None,
        whole_hosts: bool,
        rng: random.Random,
        keep_body: bool,
    ) -> None:
        self._source = source
        self._journal = journal
        self._output = output
        self._deliver = deliver
        self._work = work
        self.recorder = recorder
        self._controls = controls
        self._follow_pause = follow_pause
        self._description = description
        self._artifacts = artifacts
        self._limits = limits
        self._retry = retry
        self._crawl = crawl
        self._shard = shard
        self._whole_hosts = whole_hosts
        self._rng = rng
        self._keep_body = keep_body
        self.frontier = Frontier(crawl, recorder.links)
        self.store: Store | None = None
        self.scheduler: Scheduler | None = None
        #: Who may run what next (chosen once the store is open).
        self._work_source: WorkSource | None = None
        #: The tasks :meth:`stop` and :meth:`abort` cancel, by name.
        self._abortable: dict[str, asyncio.Task[None]] = {}

    # -- control ---------------------------------------------------------------------------

    def busiest(self, limit: int) -> tuple[HostState, ...]:
        return () if self.scheduler is None else self.scheduler.busiest(limit)

    def pause(self, paused: bool, *, share: bool) -> bool:
        """Pause or resume this run; ``share``: its job too (a shared store's, every
        worker's). Whether the job's store took it."""
        if self.scheduler is not None:
            if paused:
                self.scheduler.pause()
            else:
                self.scheduler.resume()
        if share and self.store is not None:
            self.store.share_pause(paused)
            return True
        return False

    def stop(self) -> None:
        """Take no new work: stop reading the input now (what was read but not admitted is
        read again by the next run)."""
        if self.scheduler is not None:
            self.scheduler.stop()
        feeder = self._abortable.get(FEEDER)
        if feeder is not None:
            feeder.cancel()

    def abort(self) -> None:
        """Cancel the feeder and the workers (after :meth:`stop`): requests in flight stay
        pending."""
        for task in self._abortable.values():
            task.cancel()

    def statistics(self, dns: DNSStatistics | None, *, paused: bool, running: bool) -> Statistics:
        """A snapshot of this run; while it runs, with the job's counts as the store has
        them now (a read: the recorder is left as it is)."""
        recorder, scheduler, store = self.recorder, self.scheduler, self.store
        if scheduler is None:
            snapshot = recorder.snapshot(dns=dns, paused=paused)
        else:
            in_flight = scheduler.in_flight
            waiting = scheduler.waiting_retry
            snapshot = recorder.snapshot(
                in_flight=in_flight,
                queued=max(0, scheduler.held - in_flight - waiting),
                waiting_retry=waiting,
                hosts=scheduler.host_states(),
                dns=dns,
                paused=paused,
                workers=() if store is None else store.workers,
            )
        if running and store is not None:  # the job's counts as the store has them now
            totals = job_totals(recorder, store.counts)
            snapshot = dataclasses.replace(
                snapshot, total=totals.total, job_ok=totals.job_ok, job_failed=totals.job_failed
            )
        return snapshot

    # -- the run ---------------------------------------------------------------------------

    async def execute(self) -> None:
        recorder, source, artifacts = self.recorder, self._source, self._artifacts
        try:
            async with contextlib.AsyncExitStack() as resources:
                # (Closed in the reverse order: the archive, the outputs, the store, the input.)
                resources.push_async_callback(source.aclose)
                outputs = _open_outputs(self._output)
                store = self.store = _open_store(self._journal, outputs is not None)
                resources.push_async_callback(store.close)
                # Who may run what next: chosen once, here (the stages never ask the store).
                work_source = self._work_source = self._choose_work_source(store)
                if outputs is not None:
                    resources.push_async_callback(outputs.close)
                resources.push_async_callback(artifacts.end_run)
                state = await self._open(store, source)
                await artifacts.start_run(
                    state.mark.positions, resumed=state.resumed, run_name=store.run_name
                )
                mark = await self._catch_up(store, outputs, state)
                if not state.input_done:
                    await source.skip_to(state.position)
                recorder.start()
                await self._process(source, store, work_source, outputs, state, mark)
        except BaseExceptionGroup as group:
            _raise_first(group)
        finally:
            recorder.finish()
            self._abortable = {}

    async def _open(self, store: Store, source: Source) -> JobState:
        """Open the store's job (and check the input against it); the counts so far."""
        state = await store.open(source.name, await source.fingerprint())
        if state.resumed and state.fingerprint is not None:
            length = int(state.fingerprint.partition(":")[0])
            if await source.fingerprint(length) != state.fingerprint:
                raise JournalError(
                    f"{source.name} has changed since this job began (its first"
                    f" {length:,} bytes differ from the ones the journal recorded):"
                    " resuming would skip or repeat lines; pass --restart to start"
                    " over, or another --job path to keep both"
                )
        if (
            state.input_done
            and self._work_source is not None
            and self._work_source.reopens_input
            and await source.grown(state.position)
        ):
            # A finished job's input has more since (a file grew at its end; stdin):
            # read on from where reading stopped (the store drops what it holds). (A
            # shared job's workers end once its input is done: it is not reopened.)
            state = dataclasses.replace(state, input_done=False)
        await store.describe(self._description)
        recorder = self.recorder
        recorder.skipped = state.counts.ok + state.counts.failed
        count_job(recorder, state.counts, input_done=state.input_done)
        return state

    async def _catch_up(self, store: Store, outputs: Outputs | None, state: JobState) -> SinkMark:
        """Bring the outputs up to the journal: cut them back, then write what is missing."""
        if outputs is None:
            return state.mark
        mark = await outputs.open(state.mark, state.resumed)
        while records := await store.records_after(mark.done_seq, COMMIT_BATCH):
            mark = await outputs.write(records)
        if state.resumed:
            await store.save_mark(self._artifacts.with_archive(mark))
        return mark

    async def _process(
        self,
        source: Source,
        store: Store,
        work_source: WorkSource,
        outputs: Outputs | None,
        state: JobState,
        mark: SinkMark,
    ) -> None:
        limits, work, controls, recorder = self._limits, self._work, self._controls, self.recorder
        scheduler = self.scheduler = Scheduler(
            per_host=work.rules.per_host,
            capacity=max(1024, 2 * limits.concurrency) + INPUT_BATCH,
            host_cap=work_source.host_cap(work.split_caps),
            rules=work.rules,
            retry_after_max_s=self._retry.retry_after_max_s,
            rng=self._rng,
            concurrency=limits.concurrency,
        )
        work_source.start(scheduler, work.rules)
        if controls.paused:
            scheduler.pause()
        if controls.pause_asked:
            store.share_pause(True)
            controls.pause_asked = False
        completions: Completions = asyncio.Queue(maxsize=max(1024, 2 * limits.concurrency))
        if controls.stopping:
            scheduler.stop()
        feeder = Feeder(
            source,
            store,
            state,
            scheduler,
            completions,
            work=work_source,
            recorder=recorder,
            controls=controls,
        )
        committer = Committer(
            completions,
            store,
            outputs,
            mark=mark,
            deliver=self._deliver,
            scheduler=scheduler,
            work_source=work_source,
            recorder=recorder,
            frontier=self.frontier,
            artifacts=self._artifacts,
            max_requests=self._crawl.max_requests,
        )
        async with asyncio.TaskGroup() as group:

            def start(name: str, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
                return group.create_task(coroutine, name=name)

            # source -> feeder -> scheduler
            self._abortable[FEEDER] = start(FEEDER, feeder.feed())
            # scheduler -> worker -> completions
            for number in range(limits.concurrency):
                worker = Worker(
                    scheduler,
                    completions,
                    work,
                    work_source=work_source,
                    retry=self._retry,
                    rng=self._rng,
                    recorder=recorder,
                    frontier=self.frontier,
                    artifacts=self._artifacts,
                    keep_body=self._keep_body,
                )
                self._abortable[f"{WORKER}{number}"] = start(f"{WORKER}{number}", worker.work())
            # completions -> committer -> journal -> outputs (and a stream's reader)
            start("committer", committer.commit())
            # beside the flow, for as long as the feeder and the workers run
            helpers = [
                start("take-back", work_source.take_back()),
                start("rounds", work_source.run_rounds(feeder.dispatch)),
                start("follow-pause", self._follow_store_pause(store)),
            ]
            if not state.input_done:
                helpers.append(start("estimate", feeder.estimate_total()))
            start("end", self._end_commits(helpers, completions))

    def _choose_work_source(self, store: Store) -> WorkSource:
        return work_source(store, self._shard, whole_hosts=self._whole_hosts)

    async def _follow_store_pause(self, store: Store) -> None:
        """Pause and resume as the job does (another worker of a shared job paused it)."""
        while True:
            self._follow_pause(await store.wait_pause(self._controls.paused))

    async def _end_commits(
        self, helpers: list[asyncio.Task[None]], completions: Completions
    ) -> None:
        """Once the feeder and the workers have ended, end the helpers and the commits."""
        await asyncio.wait(list(self._abortable.values()))
        for helper in helpers:
            helper.cancel()
        await completions.put(None)


def check_job(
    requests: Requests,
    journal: str | Store | None,
    output: str | None,
    *,
    entered: bool,
    running: bool,
) -> None:
    """Refuse a job the engine cannot run (before anything of it is opened)."""
    if not entered:
        raise ShoalError("use the engine inside 'async with Engine(...) as engine:'")
    if running:
        raise ShoalError("this engine is already running a job")
    if isinstance(requests, str | bytes):
        raise TypeError("requests must be an iterable of URLs or requests, not one string")
    if isinstance(journal, Store):
        # (A usage error, before anything is opened: a shared store's job is written out
        # from the store once complete, not by each worker.)
        work_source(journal, None, whole_hosts=False).check_output(output)


def _open_store(journal: str | Store | None, records: bool) -> Store:
    if journal is None:
        return MemoryStore(records=records)
    if isinstance(journal, Store):
        return journal
    return SQLiteStore(journal)


def _open_outputs(output: str | None) -> Outputs | None:
    if output is None:
        return None
    if output == "-":
        return Outputs([StreamSink(sys.stdout.buffer)])
    return Outputs([JsonlSink(output)])


def _raise_first(group: BaseExceptionGroup[Any]) -> None:
    """Re-raise the fault that ended a run as itself, not wrapped in a group."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            _raise_first(exc)
        if isinstance(exc, ShoalError):
            raise exc
    raise group.exceptions[0]
