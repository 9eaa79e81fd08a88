"""The engine: wires sources, store, scheduler, fetcher, outputs and reporting together.

One run is a :class:`asyncio.TaskGroup` of a fixed set of tasks:

* the *feeder* reads the input in batches, admits each batch to the store (which drops
  duplicates and remembers the input position) and hands the new jobs to the scheduler,
  waiting whenever the scheduler holds enough;
* ``concurrency`` *workers* take jobs from the scheduler, run one attempt each (the task,
  by default an HTTP fetch), pass the response to the user's handler, and either put the
  job back for a retry or queue its final result;
* the *committer* commits final results to the store in batches, then writes the committed
  records to the outputs, then counts them and delivers them to a stream's reader.

Stopping: :meth:`Engine.stop` takes no new work and lets requests in flight finish;
:meth:`Engine.abort` also cancels them. Either way the committer still commits everything
that finished, so the journal and the outputs agree and the next run resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

from shoal.config import (
    DEFAULT_WARC_MAX_SIZE,
    Crawl,
    DNSSettings,
    Limits,
    Politeness,
    RetryPolicy,
    Timeouts,
    plain,
)
from shoal.crawling import Frontier
from shoal.engine.calls import Call, Function
from shoal.engine.resources import (
    absolute,
    close_all,
    open_outputs,
    open_store,
    raise_first,
    warc_module,
)
from shoal.engine.streams import End, ResultIterator, T
from shoal.errors import ConfigError, JournalError, Rejected, ShoalError
from shoal.fetching import (
    Fetcher,
    Robots,
    SessionSettings,
    Task,
    ensure_descriptors,
    open_session,
)
from shoal.fetching.capture import Budget
from shoal.fetching.deadlines import Watchdog, tick_for
from shoal.fetching.dns import CachingResolver, DNSStatistics
from shoal.fetching.session import trust_context
from shoal.job import Entry, Job
from shoal.outcome import Finished, Outcome
from shoal.reporting import Recorder, Statistics
from shoal.result import Error, ErrorKind, Result
from shoal.scheduling import HostRules, HostState, Scheduler, Shard, retry_delay
from shoal.sinks import Outputs
from shoal.sinks.bodies import BodyStore
from shoal.sources import FileSource, ItemKeys, IterableSource, Source
from shoal.sources.items import MAP_INPUT
from shoal.store import (
    Committed,
    Completion,
    JobState,
    Retrying,
    SinkMark,
    Store,
)
from shoal.store.store import ARCHIVE_POSITIONS
from shoal.version import __version__

if TYPE_CHECKING:
    from shoal.sinks.warc import WarcArchive as _Archive

#: A user's async callback, run on each final response inside the worker slot. It reads the
#: result (its body too), may return a JSON value kept as ``data``, or raise
#: :class:`shoal.Rejected` to fail the request (optionally retrying it first).
Handler = Callable[[Result], Awaitable[Any]]

#: What ``stream`` and ``run`` accept as requests.
Requests = Source | Iterable[Any] | AsyncIterable[Any]
#: Hands each committed result to a stream's reader.
Deliver = Callable[[Finished], Awaitable[None]]

DEFAULT_USER_AGENT = f"shoal/{__version__}"
_INPUT_BATCH = 512
_COMMIT_BATCH = 2048
_SMALL_BATCH = 64
_LINGER_S = 0.02


@dataclass(frozen=True, slots=True)
class _Plan:
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


class Engine:
    """Fetches requests concurrently on one aiohttp session.

    Use it as an async context manager; then ``run`` a job to completion, or ``stream`` its
    results as they are committed. One job runs at a time per engine.

    Constructing an engine raises the process's soft open-file limit to what its
    concurrency needs, or raises :class:`ConfigError` when the hard limit is too low.
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        politeness: Politeness | None = None,
        headers: Mapping[str, str] | None = None,
        user_agent: str | None = None,
        fail_http: bool = False,
        keep_body: bool = False,
        handler: Handler | None = None,
        crawl: Crawl | None = None,
        resolve: Mapping[str, str] | None = None,
        resolver: AbstractResolver | None = None,
        dns: DNSSettings | None = None,
        proxy: str | None = None,
        verify_tls: bool = True,
        ca_bundle: str | None = None,
        cookies: bool = False,
        seed: int | None = None,
        shard: Shard | None = None,
        save_bodies: str | None = None,
        warc: str | None = None,
        warc_max_size: int = DEFAULT_WARC_MAX_SIZE,
    ) -> None:
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.politeness = politeness or Politeness()
        self.dns = dns or DNSSettings()
        self.crawl = crawl or Crawl()
        # A crawl's shard owns each of its hosts whole: the links a page gives stay on its
        # host (or its origin), so they are always the finding shard's own.
        self._whole_hosts = crawl is not None
        # The resolver is the engine's unless the caller brings one: it outlives a session
        # (its cache serves every run of this engine) and its counts feed statistics().
        self._dns = CachingResolver(self.dns) if resolver is None else None
        self._dns_at_start = DNSStatistics()
        self._rules = HostRules(self.politeness, self.limits.per_host)
        # Fail now, not with "Too many open files" mid-run.
        ensure_descriptors(self.limits.concurrency)
        merged = CIMultiDict({"User-Agent": user_agent or DEFAULT_USER_AGENT})
        for name, value in (headers or {}).items():
            merged[name] = value  # replaces case-insensitively: one User-Agent, say
        self._user_agent = merged["User-Agent"]
        self._settings = SessionSettings(
            connections=self.limits.concurrency,
            headers=dict(merged),
            verify_tls=verify_tls,
            # Also trust the roots in this PEM file; read now, so a bad one is a usage error.
            tls_context=None if ca_bundle is None else trust_context(ca_bundle),
            resolve=resolve,
            resolver=resolver or self._dns,
            capture=warc is not None,
            cookies=cookies,
        )
        if proxy is not None and not proxy.startswith(("http://", "https://")):
            raise ConfigError("proxy", f"{proxy!r} is not an http:// or https:// URL")
        self._proxy = proxy
        self._fail_http = fail_http
        self._keep_body = keep_body
        self._handler = handler
        self._rng = random.Random(seed)
        self._shard = shard
        self._session: aiohttp.ClientSession | None = None
        self._watchdog: Watchdog | None = None
        self._task: Task | None = None
        self._robots: Robots | None = None
        self._save_bodies = save_bodies
        self._bodies: BodyStore | None = None
        if warc_max_size < 1:
            raise ConfigError("warc_max_size", "must be at least 1 byte")
        # The archive's module is imported now: a missing extra is a usage error, not a
        # failure mid-job.
        self._new_archive: Callable[..., _Archive] | None = None
        self._warc = warc
        if warc is not None:
            archive_type = warc_module().WarcArchive
            self._new_archive = functools.partial(archive_type, warc, max_size=warc_max_size)
        self._archive: _Archive | None = None
        #: The archive's end, as the journal keeps it among the sink mark's positions.
        self._archived: dict[str, int] = {}
        # What captures waiting to be archived may hold in memory, across all workers.
        self._capture_budget = Budget()
        self._recorder = Recorder()
        self._frontier = Frontier(self.crawl, self._recorder.links)
        self._scheduler: Scheduler | None = None
        self._store: Store | None = None
        self._running = False
        self._stopping = False
        self._paused = False
        self._abortable: list[asyncio.Task[None]] = []

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._save_bodies is not None:
            bodies = BodyStore(self._save_bodies)
            try:
                await bodies.open()
            except BaseException:
                bodies.close()
                raise
            self._bodies = bodies
        if self._new_archive is not None:
            self._archive = self._new_archive(
                info={
                    "http-header-user-agent": self._user_agent,
                    "robots": "obey" if self.politeness.respect_robots else "ignore",
                },
            )
        self._session = open_session(self._settings)
        every = [self.timeouts]
        every += [p.timeouts for p in self.politeness.hosts.values() if p.timeouts is not None]
        self._watchdog = Watchdog(tick_for(every))
        self._task = Fetcher(
            self._session,
            limits=self.limits,
            timeouts=self.timeouts,
            watchdog=self._watchdog,
            fail_http=self._fail_http,
            keep_body=self._keep_body or self._handler is not None,
            proxy=self._proxy,
            rules=None if self._rules.uniform else self._rules,
            bodies=self._bodies,
            archive=None if self._archive is None else self._archive.spool,
            budget=self._capture_budget,
        )
        politeness = self.politeness
        if politeness.respect_robots:
            self._robots = Robots(
                self._session,
                user_agent=self._user_agent,
                timeout_s=min(self.timeouts.total_s, 30.0),
                on_crawl_delay=self._crawl_delay if politeness.robots_crawl_delay else None,
            )
        return self

    def _crawl_delay(self, host: str, delay_s: float) -> None:
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.keep_apart(host, min(delay_s, self.politeness.crawl_delay_max_s))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._dns is not None:
            await self._dns.close()
        if self._bodies is not None:
            self._bodies.close()
            self._bodies = None
        if self._archive is not None:
            self._archive.close()
            self._archive = None

    # -- control ---------------------------------------------------------------------------

    def statistics(self) -> Statistics:
        """A snapshot of the current (or last) run."""
        dns = None if self._dns is None else self._dns.statistics().since(self._dns_at_start)
        store, recorder = self._store, self._recorder
        if self._running and store is not None:  # the job's counts as the store has them now
            counts = store.counts
            recorder.job_ok, recorder.job_failed = counts.ok, counts.failed
            if recorder.total is not None and not recorder.total_is_estimate:
                recorder.total = counts.admitted
        scheduler = self._scheduler
        if scheduler is None:
            return self._recorder.snapshot(dns=dns, paused=self._paused)
        in_flight = scheduler.in_flight
        waiting = scheduler.waiting_retry
        return self._recorder.snapshot(
            in_flight=in_flight,
            queued=max(0, scheduler.held - in_flight - waiting),
            waiting_retry=waiting,
            hosts=scheduler.host_states(),
            dns=dns,
            paused=self._paused,
            workers=() if self._store is None else self._store.workers,
        )

    def busiest_hosts(self, limit: int = 20) -> tuple[HostState, ...]:
        """The hosts of the current run with the most requests in flight and queued."""
        scheduler = self._scheduler
        return () if scheduler is None else scheduler.busiest(limit)

    def pause(self) -> None:
        """Start no new request until :meth:`resume`: the ones in flight finish, and the
        run stays open (it can still be stopped, and a paused job killed resumes like any
        other). Called before a run, the run starts paused. On a shared store the whole
        job pauses: every worker of it."""
        self._pause(True, share=True)

    def resume(self) -> None:
        """Start requests again after :meth:`pause` (every worker, on a shared store)."""
        self._pause(False, share=True)

    def _pause(self, paused: bool, *, share: bool) -> None:
        self._paused = paused
        if self._scheduler is not None:
            if paused:
                self._scheduler.pause()
            else:
                self._scheduler.resume()
        if share and self._running and self._store is not None:
            self._store.share_pause(paused)

    @property
    def paused(self) -> bool:
        return self._paused

    def stop(self) -> None:
        """Take no new work; requests in flight finish, then the run ends (resumable).

        Called between runs, it is kept for the next run, which then ends at once; the
        statistics of a run that already ended are left as they were."""
        self._stopping = True
        if self._running:
            self._recorder.interrupted = True
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._abortable:
            # The feeder may be waiting for input that is slow to come: stop it now. What it
            # read but did not admit is read again by the next run.
            self._abortable[0].cancel()

    def abort(self) -> None:
        """Stop at once: requests in flight are cancelled and stay pending for a resume."""
        self.stop()
        for task in self._abortable:
            task.cancel()

    # -- running jobs ----------------------------------------------------------------------

    async def run(
        self, requests: Requests, *, journal: str | Store | None = None, output: str | None = None
    ) -> Statistics:
        """Process every request; results go to ``output`` (a path, or ``"-"`` for stdout).

        With a ``journal`` path the job is resumable: running the same job again continues
        where it stopped, and no request is fetched or recorded twice.
        """
        await self._run_job(requests, journal, output, None)
        return self.statistics()

    def stream(
        self, requests: Requests, *, journal: str | Store | None = None, output: str | None = None
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Result]]:
        """Yield results as they are committed::

            async with engine.stream(urls) as results:
                async for result in results:
                    ...

        Leaving the block early cancels the rest of the job (resumable with a journal).
        """
        return self._stream(
            Result, lambda deliver: self._run_job(requests, journal, output, deliver)
        )

    def map(
        self,
        function: Function,
        items: Iterable[Any] | AsyncIterable[Any] | FileSource,
        *,
        key: Callable[[Any], object] | None = None,
        group: Callable[[Any], object] | None = None,
        timeout_s: float | None = None,
        journal: str | Store | None = None,
        output: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Outcome]]:
        """Call ``await function(item)`` for every item, and yield each :class:`Outcome`
        as it is committed::

            async with engine.map(lookup, names, group=domain_of) as outcomes:
                async for outcome in outcomes:
                    ...

        Items are read lazily (a :class:`shoal.FileSource` as JSON lines, an item a line,
        resumed by its byte offset), each JSON value once by its key (``key(item)``, by
        default its canonical JSON). The engine's ``limits`` bound the calls in flight, in all and
        per group (``group(item)``; without it every call may run at once up to the
        concurrency), its politeness rates and delays pace each group, and its retry policy
        retries what ``function`` raises when the exception is one of
        ``RetryPolicy.on_exceptions`` (or a ``Rejected(retry=True)``). ``timeout_s`` bounds
        each call. With a ``journal`` the job resumes after any stop, each item's outcome
        recorded once; ``output`` writes the records as JSON lines.
        """
        source, plan = self._map_plan(function, items, key, group, timeout_s)

        def run(deliver: Deliver) -> Awaitable[None]:
            return self._run_job(source, journal, output, deliver, plan)

        return self._stream(Outcome, run)

    def _map_plan(
        self,
        function: Function,
        items: Iterable[Any] | AsyncIterable[Any] | FileSource,
        key: Callable[[Any], object] | None,
        group: Callable[[Any], object] | None,
        timeout_s: float | None,
    ) -> tuple[Source, _Plan]:
        """The source and the plan of a map over ``items``."""
        if isinstance(items, str | bytes):
            raise TypeError("items must be an iterable of items, not one string")
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigError("timeout_s", "must be above 0")
        task = Call(function, timeout_s=timeout_s, retry_on=self.retry.on_exceptions)
        keys = ItemKeys(key, group)
        source: Source
        if isinstance(items, FileSource):
            items.read_items(keys, f"{_map_name(function)} {items.name}")
            source = items
        else:
            source = IterableSource(items, name=_map_name(function), parse=keys.entry)
        if group is None:  # one bucket for all: only the concurrency bounds it
            rules = HostRules(self.politeness, self.limits.concurrency)
            return source, _Plan(task, rules, split_caps=False)
        return source, _Plan(task, self._rules)

    @contextlib.asynccontextmanager
    async def _stream(
        self, kind: type[T], run_job: Callable[[Deliver], Awaitable[None]]
    ) -> AsyncIterator[AsyncIterator[T]]:
        queue: asyncio.Queue[T | End] = asyncio.Queue(maxsize=self.limits.concurrency)

        async def deliver(result: Finished) -> None:
            assert isinstance(result, kind)
            await queue.put(result)

        async def run() -> None:
            error: BaseException | None = None
            try:
                await run_job(deliver)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the reader below
                error = exc
            await queue.put(End(error))

        runner = asyncio.create_task(run())
        try:
            yield ResultIterator(queue)
        finally:
            if not runner.done():
                self.abort()
                runner.cancel()
            # Wait without swallowing a cancellation of our own caller; the run's errors
            # already reached the reader through the queue.
            await asyncio.wait([runner])
            if not runner.cancelled():
                runner.exception()

    async def _run_job(
        self,
        requests: Requests,
        journal: str | Store | None,
        output: str | None,
        deliver: Deliver | None,
        plan: _Plan | None = None,
    ) -> None:
        if self._session is None or self._task is None:
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
                plan = _Plan(self._task, self._rules, self._robots, self._handler)
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

    def _description(self, output: str | None) -> dict[str, Any]:
        """This run's settings as the journal keeps them for ``shoal report``: paths made
        absolute, header values and a proxy's credentials left out."""
        session = self._settings
        return {
            "shoal": __version__,
            "limits": plain(self.limits),
            "timeouts": plain(self.timeouts),
            "retry": plain(self.retry),
            "politeness": plain(self.politeness),
            "dns": plain(self.dns),
            "crawl": plain(self.crawl),
            "user_agent": self._user_agent,
            "headers": sorted(name for name in session.headers if name != "User-Agent"),
            "fail_http": self._fail_http,
            "verify_tls": session.verify_tls,
            "cookies": session.cookies,
            "proxy": None if self._proxy is None else str(URL(self._proxy).with_user(None)),
            "resolve": plain(session.resolve or {}),
            "output": absolute(output),
            "save_bodies": absolute(self._save_bodies),
            "warc": absolute(self._warc),
            "shard": None if self._shard is None else [self._shard.index, self._shard.count],
            # The longest one attempt may last (a shared job's lease outlives it by this).
            "attempt_max_s": max(
                [self.timeouts.total_s]
                + [p.timeouts.total_s for p in self.politeness.hosts.values() if p.timeouts]
            ),
        }

    async def _catch_up(self, store: Store, outputs: Outputs | None, state: JobState) -> SinkMark:
        """Bring the outputs up to the journal: cut them back, then write what is missing."""
        if outputs is None:
            return state.mark
        mark = await outputs.open(state.mark, state.resumed)
        while records := await store.records_after(mark.done_seq, _COMMIT_BATCH):
            mark = await outputs.write(records)
        if state.resumed:
            await store.save_mark(self._with_archive(mark))
        return mark

    def _with_archive(self, mark: SinkMark) -> SinkMark:
        """``mark`` with the archive's end added (committed with it, see :mod:`.warc`)."""
        if not self._archived:
            return mark
        return SinkMark(mark.done_seq, {**mark.positions, **self._archived})

    async def _process(
        self,
        source: Source,
        store: Store,
        outputs: Outputs | None,
        state: JobState,
        mark: SinkMark,
        deliver: Deliver | None,
        plan: _Plan,
    ) -> None:
        limits = self.limits
        shard = self._shard
        scheduler = self._scheduler = Scheduler(
            per_host=plan.rules.per_host,
            capacity=max(1024, 2 * limits.concurrency) + _INPUT_BATCH,
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
            store.share_pause(True)
        completions: asyncio.Queue[Completion | None] = asyncio.Queue(
            maxsize=max(1024, 2 * limits.concurrency)
        )
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

    # -- the stages ------------------------------------------------------------------------

    async def _feed(
        self,
        source: Source,
        store: Store,
        state: JobState,
        scheduler: Scheduler,
        completions: asyncio.Queue[Completion | None],
        rules: HostRules,
    ) -> None:
        recorder = self._recorder
        if state.resumed:
            after = 0
            while not self._stopping and after < state.last_seq:
                # (Follow-ups admitted since the run began are the committer's to hand on.)
                jobs = [
                    job
                    for job in await store.pending(after, _INPUT_BATCH)
                    if job.seq <= state.last_seq
                ]
                if not jobs:
                    break
                after = jobs[-1].seq
                await self._dispatch(jobs, store, scheduler, completions)
        if not state.input_done:
            while not self._stopping:
                before = source.position
                entries = await source.read_batch(_INPUT_BATCH)
                if entries == [] and source.position == before:
                    continue  # a quiet input: nothing to admit yet
                if entries is None:
                    await store.finish_input()
                    recorder.total = store.counts.admitted
                    recorder.total_is_estimate = False
                    break
                if self._shard is not None:
                    entries = self._own_entries(entries, rules)
                jobs = await store.admit(entries, source.position)
                recorder.duplicates += len(entries) - len(jobs)
                if not store.leases:  # (a shared store hands out every job by its host)
                    await self._dispatch(jobs, store, scheduler, completions)
        scheduler.close()  # workers end once nothing is held, deferred or expected

    def _own_entries(self, entries: list[Entry], rules: HostRules) -> list[Entry]:
        """The entries this engine's shard handles (each host's rule decides its spread)."""
        shard = self._shard
        assert shard is not None
        owned = []
        for entry in entries:
            host = entry.host
            if host is None:
                mine = shard.owns(entry)
            else:
                rule = rules.for_host(host)
                whole = rule.paced or self._whole_hosts
                mine = shard.owns(entry, rule.max_in_flight, paced=whole)
            if mine:
                owned.append(entry)
        return owned

    async def _dispatch(
        self,
        jobs: list[Job],
        store: Store,
        scheduler: Scheduler,
        completions: asyncio.Queue[Completion | None],
    ) -> None:
        valid = []
        for job in jobs:
            if job.error is not None:
                await completions.put((job, job.failed(job.error)))
            else:
                valid.append(job)
        await _hand_on(store, scheduler, valid)
        await scheduler.wait_room()

    async def _claim(
        self, store: Store, scheduler: Scheduler, completions: asyncio.Queue[Completion | None]
    ) -> None:
        """Take work from a shared store, round after round, until it has none left for
        this worker: the jobs of the hosts it holds, and the hosts it takes over (with the
        pace they carry) or must give up."""
        try:
            while not scheduler.stopped:
                await scheduler.wait_room()
                claim = await store.claim(scheduler.free, scheduler.pace_of)
                if claim is None:
                    break
                for host in claim.drop:
                    store.let_go(scheduler.drop_host(host))
                for host, pace in claim.acquired.items():
                    scheduler.take_over(host, pace)
                if claim.jobs:
                    await self._dispatch(claim.jobs, store, scheduler, completions)
        finally:
            scheduler.settled()

    async def _follow_pause(self, store: Store) -> None:
        """Pause and resume as the job does (another worker of a shared job paused it)."""
        while True:
            self._pause(await store.wait_pause(self._paused), share=False)

    @staticmethod
    async def _refill(store: Store, scheduler: Scheduler) -> None:
        """Bring deferred jobs back for the hosts whose queues run low, all run long (its
        own task, so the input is read on meanwhile)."""
        while True:
            await scheduler.wait_hungry()
            for host, room in scheduler.hungry():
                scheduler.took(host, room, await store.take_deferred(host, room))

    async def _work(
        self, scheduler: Scheduler, completions: asyncio.Queue[Completion | None], plan: _Plan
    ) -> None:
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
                await _put(completions, (job, Retrying(job.attempts)))
                # Once stopped, the job is let go: it stays pending for the next run.
                if scheduler.retry_later(job, delay):
                    self._recorder.retries += 1
                else:
                    self._let_go(job)
                continue
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

    async def _settle_body(self, result: Result, *, final: bool) -> None:
        """Keep a final response's saved body (in place, by its SHA-256), or drop it."""
        bodies, path = self._bodies, result.body_file
        assert bodies is not None and path is not None
        result.body_file = None
        if final and result.sha256 is not None:
            result.body_path = await bodies.keep(path, result.sha256)
        else:
            await bodies.discard(path)

    async def _drop_capture(self, result: Result) -> None:
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
        completions: asyncio.Queue[Completion | None],
        job: Job,
        result: Finished,
    ) -> None:
        await _put(completions, (job, result))
        scheduler.finish(job)

    async def _commit(
        self,
        store: Store,
        outputs: Outputs | None,
        completions: asyncio.Queue[Completion | None],
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
                responses = [result for result in finals if isinstance(result, Result)]
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
            await _hand_on(store, scheduler, committed.admitted, within_capacity=True)
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
        completions: asyncio.Queue[Completion | None],
    ) -> None:
        await asyncio.wait([feeder, *workers])
        for helper in helpers:
            if helper is not None:
                helper.cancel()
        await completions.put(None)

    async def _estimate_total(self, source: Source) -> None:
        estimate = await source.wait_total()
        recorder = self._recorder
        if estimate is not None and recorder.total is None:
            recorder.total = max(estimate, recorder.skipped)
            recorder.total_is_estimate = True


async def _hand_on(
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


async def _put(completions: asyncio.Queue[Completion | None], item: Completion) -> None:
    try:
        completions.put_nowait(item)
    except asyncio.QueueFull:
        await completions.put(item)


def _drain(completions: asyncio.Queue[Completion | None], batch: list[Completion]) -> bool:
    """Move what is queued into ``batch`` (up to a commit's worth); True at the end mark."""
    while len(batch) < _COMMIT_BATCH:
        try:
            item = completions.get_nowait()
        except asyncio.QueueEmpty:
            return False
        if item is None:
            return True
        batch.append(item)
    return False


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


def _host_cap(shard: Shard, *, whole: bool) -> Callable[[str, int, bool], int]:
    def cap(host: str, limit: int, paced: bool) -> int:
        return shard.host_cap(host, limit, paced=paced or whole)

    return cap


def _map_name(function: Function) -> str:
    """The journal's name for a map's input: the function's, so that a journal is not
    resumed by another function."""
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{MAP_INPUT}{getattr(function, '__module__', None) or '?'}.{name}>"
