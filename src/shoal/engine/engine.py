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

Each stage is a part of :class:`Engine` in a module of its own (:mod:`.feeder`,
:mod:`.workers`, :mod:`.committer`; what they share is in :mod:`.stage`), and so is a run
from start to end (:mod:`.runs`); this module holds the engine's settings, its lifetime
and controls, and its public API.

Stopping: :meth:`Engine.stop` takes no new work and lets requests in flight finish;
:meth:`Engine.abort` also cancels them. Either way the committer still commits everything
that finished, so the journal and the outputs agree and the next run resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

from shoal.config import (
    Crawl,
    Limits,
    Network,
    Outputs,
    Politeness,
    RetryPolicy,
    Timeouts,
    journal_copy,
    plain,
)
from shoal.crawling import Frontier
from shoal.engine.calls import Call, Function
from shoal.engine.resources import (
    absolute,
    warc_module,
)
from shoal.engine.runs import Running
from shoal.engine.stage import Deliver, Handler, Plan, Requests
from shoal.engine.streams import End, ResultIterator, T
from shoal.errors import ConfigError
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
from shoal.fetching.proxies import Proxies
from shoal.fetching.session import trust_context
from shoal.outcome import Finished, Outcome
from shoal.reporting import Recorder, Statistics
from shoal.result import Result
from shoal.scheduling import HostRules, HostState, Scheduler, Shard
from shoal.sinks.bodies import BodyStore
from shoal.sources import FileSource, ItemKeys, IterableSource, Source
from shoal.sources.items import MAP_INPUT
from shoal.store import (
    Store,
)
from shoal.version import __version__

if TYPE_CHECKING:
    from shoal.sinks.warc import WarcArchive as _Archive


class Engine(Running):
    """Fetches requests concurrently on one aiohttp session.

    Use it as an async context manager; then ``run`` a job to completion, or ``stream`` its
    results as they are committed. One job runs at a time per engine.

    Its settings are value classes: ``limits``, ``timeouts``, ``retry``, ``politeness``,
    ``crawl`` (which follow-ups a ``handler`` may admit), ``network`` (headers, proxy, TLS,
    cookies, name lookups) and ``outputs`` (what records hold, bodies, WARC); besides
    them ``handler`` (an async callback per final response), ``fail_http`` (a non-2xx
    answer is a failure), ``keep_body`` (bodies kept on results), ``resolver`` (a
    caller's own, instead of shoal's caching one), ``seed`` (of the jitter's random
    numbers) and ``shard`` (this engine's part of a job run by several processes).

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
        crawl: Crawl | None = None,
        network: Network | None = None,
        outputs: Outputs | None = None,
        handler: Handler | None = None,
        fail_http: bool = False,
        keep_body: bool = False,
        resolver: AbstractResolver | None = None,
        seed: int | None = None,
        shard: Shard | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.politeness = politeness or Politeness()
        self.crawl = crawl or Crawl()
        self.network = network = network or Network()
        self.outputs = outputs = outputs or Outputs()
        self.records = outputs.records
        self.dns = network.dns
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
        merged = CIMultiDict({"User-Agent": network.user_agent})
        for name, value in network.headers.items():
            merged[name] = value  # replaces case-insensitively: one User-Agent, say
        self._user_agent = merged["User-Agent"]
        self._settings = SessionSettings(
            connections=self.limits.concurrency,
            headers=dict(merged),
            verify_tls=network.verify_tls,
            # Also trust the roots in this PEM file; read now, so a bad one is a usage error.
            tls_context=None if network.ca_bundle is None else trust_context(network.ca_bundle),
            resolve=network.resolve or None,
            resolver=resolver or self._dns,
            capture=outputs.warc is not None,
            cookies=network.cookies,
        )
        # The proxy for every request, or (without one) the environment's, read now.
        self._proxies = Proxies(network.proxy, environment=network.proxy_env)
        self._fail_http = fail_http
        self._keep_body = keep_body
        self._handler = handler
        self._rng = random.Random(seed)
        self._shard = shard
        self._session: aiohttp.ClientSession | None = None
        self._watchdog: Watchdog | None = None
        self._task: Task | None = None
        self._robots: Robots | None = None
        self._save_bodies = outputs.bodies
        self._bodies: BodyStore | None = None
        # The archive's module is imported now: a missing extra is a usage error, not a
        # failure mid-job.
        self._new_archive: Callable[..., _Archive] | None = None
        self._warc = outputs.warc
        if outputs.warc is not None:
            archive_type = warc_module().WarcArchive
            self._new_archive = functools.partial(
                archive_type, outputs.warc, max_size=outputs.warc_max_size
            )
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
        #: A pause asked for before the run (pushed to a shared store's job as it starts).
        self._pause_asked = False
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
            proxies=self._proxies,
            rules=None if self._rules.uniform else self._rules,
            bodies=self._bodies,
            archive=None if self._archive is None else self._archive.spool,
            budget=self._capture_budget,
            records=self.records,
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
        elif share:
            self._pause_asked = paused

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
    ) -> tuple[Source, Plan]:
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
            return source, Plan(task, rules, split_caps=False)
        return source, Plan(task, self._rules)

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

    def _description(self, output: str | None) -> dict[str, Any]:
        """This run's settings as the journal keeps them for ``shoal report``: paths made
        absolute, header values and a proxy's credentials left out."""
        session = self._settings
        return journal_copy(
            {
                "shoal": __version__,
                "limits": plain(self.limits),
                "timeouts": plain(self.timeouts),
                "retry": plain(self.retry),
                "politeness": plain(self.politeness),
                "dns": plain(self.dns),
                "crawl": plain(self.crawl),
                "records": plain(self.records),
                "user_agent": self._user_agent,
                "headers": sorted(name for name in session.headers if name.lower() != "user-agent"),
                "fail_http": self._fail_http,
                "verify_tls": session.verify_tls,
                "cookies": session.cookies,
                "proxy": _without_user(self._proxies.fixed),
                "proxy_env": {
                    scheme: _without_user(url) for scheme, url in self._proxies.environment.items()
                },
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
        )

    # -- the stages ------------------------------------------------------------------------


def _without_user(proxy: str | None) -> str | None:
    return None if proxy is None else str(URL(proxy).with_user(None))


def _map_name(function: Function) -> str:
    """The journal's name for a map's input: the function's, so that a journal is not
    resumed by another function."""
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{MAP_INPUT}{getattr(function, '__module__', None) or '?'}.{name}>"
