"""A run from start to end: the store opened (and the input checked against it), the
outputs brought up to the journal, then the stages (:mod:`.feeder`, :mod:`.workers`,
:mod:`.committer`) wired in one :class:`asyncio.TaskGroup` until the work is done or
stopped, and everything closed whatever happened."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from shoal.crawling import Frontier
from shoal.engine.committer import Committing
from shoal.engine.feeder import Feeding
from shoal.engine.resources import close_all, open_outputs, open_store, raise_first
from shoal.engine.stage import COMMIT_BATCH, INPUT_BATCH, Completions, Deliver, Plan, Requests
from shoal.engine.workers import Working
from shoal.errors import ConfigError, JournalError, ShoalError
from shoal.reporting import Recorder
from shoal.scheduling import Scheduler, Shard
from shoal.sinks import Outputs
from shoal.sources import IterableSource, Source
from shoal.store import JobState, SinkMark, Store
from shoal.store.store import ARCHIVE_POSITIONS


class Running(Feeding, Working, Committing):
    """The engine's runs: one at a time, each to its end."""

    async def _run_job(
        self,
        requests: Requests,
        journal: str | Store | None,
        output: str | None,
        deliver: Deliver | None,
        plan: Plan | None = None,
    ) -> None:
        if self._transport is None or self._task is None:
            raise ShoalError("use the engine inside 'async with Engine(...) as engine:'")
        if self._running:
            raise ShoalError("this engine is already running a job")
        if isinstance(requests, str | bytes):
            raise TypeError("requests must be an iterable of URLs or requests, not one string")
        if isinstance(journal, Store) and journal.leases and output is not None:
            raise ConfigError(
                "output",
                "a job on a shared store is written out once it is complete, from the"
                " store (shoal export), not by each worker",
            )
        self._running = True  # (a stop() before the run is kept: the run ends at once)
        self._recorder = recorder = Recorder()
        self._frontier = Frontier(self.crawl, recorder.links)
        if self._dns is not None:
            self._dns_at_start = self._dns.statistics()
        self._capture_budget.held = 0  # what an aborted run held is gone with it
        source = requests if isinstance(requests, Source) else IterableSource(requests)
        outputs = open_outputs(output)
        store = self._store = open_store(journal, outputs is not None)
        try:
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
            if state.input_done and not store.leases and await source.grown(state.position):
                # A finished job's input has more since (a file grew at its end; stdin):
                # read on from where reading stopped (the store drops what it holds). (A
                # shared job's workers end once its input is done: it is not reopened.)
                state = dataclasses.replace(state, input_done=False)
            await store.describe(self._description(output))
            recorder.skipped = state.counts.ok + state.counts.failed
            recorder.job_ok, recorder.job_failed = state.counts.ok, state.counts.failed
            if state.input_done:
                recorder.total = state.counts.admitted
            if self._archive is not None:
                self._archived = await self._archive.open(
                    state.mark.positions if state.resumed else None, store.run_name
                )
            else:  # kept for a later run with the archive again
                self._archived = {
                    name: value
                    for name, value in state.mark.positions.items()
                    if name.startswith(ARCHIVE_POSITIONS)
                }
            mark = await self._catch_up(store, outputs, state)
            if not state.input_done:
                await source.skip_to(state.position)
            recorder.start()
            recorder.unit = "request" if plan is None else "item"
            if plan is None:
                plan = Plan(self._task, self._rules, self._robots, self._handler)
            await self._process(source, store, outputs, state, mark, deliver, plan)
        except BaseExceptionGroup as group:
            raise_first(group)
        finally:
            recorder.finish()
            recorder.interrupted = self._stopping
            self._stopping = False  # the stop was this run's; the next run starts afresh
            self._running = False
            self._abortable = []
            try:
                if self._archive is not None:
                    await self._archive.finish()
            finally:
                await close_all(store, outputs, source)

    async def _catch_up(self, store: Store, outputs: Outputs | None, state: JobState) -> SinkMark:
        """Bring the outputs up to the journal: cut them back, then write what is missing."""
        if outputs is None:
            return state.mark
        mark = await outputs.open(state.mark, state.resumed)
        while records := await store.records_after(mark.done_seq, COMMIT_BATCH):
            mark = await outputs.write(records)
        if state.resumed:
            await store.save_mark(self._with_archive(mark))
        return mark

    async def _process(
        self,
        source: Source,
        store: Store,
        outputs: Outputs | None,
        state: JobState,
        mark: SinkMark,
        deliver: Deliver | None,
        plan: Plan,
    ) -> None:
        limits = self.limits
        shard = self._shard
        scheduler = self._scheduler = Scheduler(
            per_host=plan.rules.per_host,
            capacity=max(1024, 2 * limits.concurrency) + INPUT_BATCH,
            host_cap=(
                None
                if shard is None or not plan.split_caps
                else _host_cap(shard, whole=self._whole_hosts)
            ),
            rules=plan.rules,
            retry_after_max_s=self.retry.retry_after_max_s,
            rng=self._rng,
            concurrency=limits.concurrency,
        )
        if self._paused:
            scheduler.pause()
        if self._pause_asked:
            store.share_pause(True)
            self._pause_asked = False
        completions: Completions = asyncio.Queue(maxsize=max(1024, 2 * limits.concurrency))
        if self._stopping:
            scheduler.stop()
        async with asyncio.TaskGroup() as group:
            feeder = group.create_task(
                self._feed(source, store, state, scheduler, completions, plan.rules)
            )
            workers = [
                group.create_task(self._work(scheduler, completions, plan))
                for _ in range(limits.concurrency)
            ]
            self._abortable = [feeder, *workers]
            estimate = None if state.input_done else group.create_task(self._estimate_total(source))
            refill = group.create_task(self._refill(store, scheduler))
            follow = group.create_task(self._follow_pause(store))
            claim = None
            if store.leases:
                scheduler.expect()  # the work may grow until the store says it is done
                claim = group.create_task(self._claim(store, scheduler, completions))
            group.create_task(self._commit(store, outputs, completions, mark, deliver))
            group.create_task(
                self._end_commits(feeder, workers, [estimate, refill, follow, claim], completions)
            )


def _host_cap(shard: Shard, *, whole: bool) -> Callable[[str, int, bool], int]:
    def cap(host: str, limit: int, paced: bool) -> int:
        return shard.host_cap(host, limit, paced=paced or whole)

    return cap
