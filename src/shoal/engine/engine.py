"""The engine: its settings, what outlives a run (the session, the deadline watchdog, the
DNS resolver, the bodies folder and the archive), its controls and its public API. Each
job is a :class:`~shoal.engine.run.Run` (:mod:`.run`), built from stages of their own.

Stopping: :meth:`Engine.stop` takes no new work and lets requests in flight finish;
:meth:`Engine.abort` also cancels them. Either way the committer still commits everything
that finished, so the journal and the outputs agree and the next run resumes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, Never, Self

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
    moved_keyword,
    plain,
)
from shoal.engine.calls import Function
from shoal.engine.flow import Controls, Deliver
from shoal.engine.run import Requests, Run, check_job
from shoal.engine.streams import stream
from shoal.engine.tasks import Handler, Work, fetch_work, map_work
from shoal.fetching import SessionSettings, ensure_descriptors
from shoal.fetching.dns import CachingResolver, DNSStatistics
from shoal.fetching.proxies import Proxies
from shoal.fetching.session import trust_context
from shoal.outcome import Outcome
from shoal.reporting import Recorder, Statistics
from shoal.result import Result
from shoal.scheduling import HostRules, HostState, Shard
from shoal.sinks.artifacts import Artifacts
from shoal.sources import FileSource, IterableSource, Source
from shoal.store import Store
from shoal.version import __version__


class Engine:
    """Fetches requests concurrently through one transport (one aiohttp session).

    Use it as an async context manager; then ``run`` a job to completion, or ``stream`` its
    results as they are committed. One job runs at a time per engine.

    Its settings are value classes: ``limits``, ``timeouts``, ``retry`` (with the ``seed``
    of the jitter's random numbers), ``politeness``, ``crawl`` (which follow-ups a
    ``handler`` may admit), ``network`` (headers, proxy, TLS, cookies, name lookups, a
    caller's own ``resolver``) and ``outputs`` (what records hold, bodies in memory with
    ``keep_body``, bodies on disk, WARC); besides them ``handler`` (an async callback per
    final response), ``fail_http`` (a non-2xx answer is a failure) and ``shard`` (this
    engine's part of a job run by several processes).

    The JSON records are not among ``outputs``: ``run``, ``stream`` and ``map`` take each
    run's ``output`` beside its ``journal``, as the records follow the journal (a run cuts
    its output back to the journal's mark and writes what the journal has beyond it; a
    shared store's records are written from the store, not by each worker). The bodies
    folder and the archive are the engine's, opened on entering it, shared by its runs.

    Entering an engine raises the process's soft open-file limit to what its concurrency
    needs, or raises :class:`ConfigError` when the hard limit is too low (constructing one
    changes nothing of the process).
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
        shard: Shard | None = None,
        **moved: Never,
    ) -> None:
        for name in moved:  # (a keyword that moved into a value class, or an unknown one)
            raise moved_keyword("Engine", name)
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.politeness = politeness or Politeness()
        self.crawl = crawl or Crawl()
        self.network = network = network or Network()
        self.outputs = outputs = outputs or Outputs()
        self.dns = network.dns
        # A crawl's shard owns each of its hosts whole: the links a page gives stay on its
        # host (or its origin), so they are always the finding shard's own.
        self._whole_hosts = crawl is not None
        # The resolver is the engine's unless the caller brings one: it outlives a session
        # (its cache serves every run of this engine) and its counts feed statistics().
        resolver = network.resolver
        self._dns = CachingResolver(self.dns) if resolver is None else None
        self._dns_at_start = DNSStatistics()
        self._rules = HostRules(self.politeness, self.limits.per_host)
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
            transport=network.transport,
        )
        # The proxy for every request, or (without one) the environment's, read now.
        self._proxies = Proxies(network.proxy, environment=network.proxy_env)
        self._fail_http = fail_http
        self._handler = handler
        self._rng = random.Random(self.retry.seed)
        self._shard = shard
        # The bodies folder and the archive (its module imported now: a missing extra is
        # a usage error, not a failure mid-job).
        self._artifacts = Artifacts(
            outputs.bodies,
            outputs.warc,
            warc_max_size=outputs.warc_max_size,
            info={
                "http-header-user-agent": self._user_agent,
                "robots": "obey" if self.politeness.respect_robots else "ignore",
            },
        )
        #: What the engine's lifetime opened, closed on leaving it.
        self._opened: contextlib.AsyncExitStack | None = None
        #: The work of a fetch run (its task built on entering the engine).
        self._fetch: Work | None = None
        self._recorder = Recorder()
        self._controls = Controls()
        self._run: Run | None = None  # the current (or last) run
        self._running = False

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        # Fail now, not with "Too many open files" mid-run.
        ensure_descriptors(self.limits.concurrency)
        async with contextlib.AsyncExitStack() as opened:
            # (Closed in reverse, each even when one before it fails: see __aexit__.)
            if self._dns is not None:
                opened.push_async_callback(self._dns.close)
            opened.callback(self._artifacts.close)
            await self._artifacts.open()
            self._fetch = fetch_work(
                opened,
                self._settings,
                limits=self.limits,
                timeouts=self.timeouts,
                records=self.outputs.records,
                politeness=self.politeness,
                rules=self._rules,
                proxies=self._proxies,
                user_agent=self._user_agent,
                fail_http=self._fail_http,
                keep_body=self.outputs.keep_body,
                handler=self._handler,
                artifacts=self._artifacts,
                on_crawl_delay=self._crawl_delay,
            )
            self._opened = opened.pop_all()
        return self

    def _crawl_delay(self, host: str, delay_s: float) -> None:
        scheduler = None if self._run is None else self._run.scheduler
        if scheduler is not None:
            scheduler.keep_apart(host, min(delay_s, self.politeness.crawl_delay_max_s))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The watchdog, the session, the resolver, then the bodies and the archive.
        opened, self._opened, self._fetch = self._opened, None, None
        if opened is not None:
            await opened.aclose()

    # -- control ---------------------------------------------------------------------------

    def statistics(self) -> Statistics:
        """A snapshot of the current (or last) run (a pure read)."""
        dns = None if self._dns is None else self._dns.statistics().since(self._dns_at_start)
        if self._run is None:
            return self._recorder.snapshot(dns=dns, paused=self._controls.paused)
        return self._run.statistics(dns, paused=self._controls.paused, running=self._running)

    def busiest_hosts(self, limit: int = 20) -> tuple[HostState, ...]:
        """The hosts of the current run with the most requests in flight and queued."""
        return () if self._run is None else self._run.busiest(limit)

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
        self._controls.paused = paused
        shared = self._run is not None and self._run.pause(paused, share=share and self._running)
        if share and not shared:
            self._controls.pause_asked = paused

    @property
    def paused(self) -> bool:
        return self._controls.paused

    def stop(self) -> None:
        """Take no new work; requests in flight finish, then the run ends (resumable).

        Called between runs, it is kept for the next run, which then ends at once; the
        statistics of a run that already ended are left as they were."""
        self._controls.stopping = True
        if self._running:
            self._recorder.interrupted = True
        if self._run is not None:
            self._run.stop()

    def abort(self) -> None:
        """Stop at once: requests in flight are cancelled and stay pending for a resume."""
        self.stop()
        if self._run is not None:
            self._run.abort()

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
        run = functools.partial(self._run_job, requests, journal, output)
        return stream(Result, run, size=self.limits.concurrency, abort=self.abort)

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
        limits, retry, rules = self.limits, self.retry, self._rules
        source, work = map_work(function, items, key, group, timeout_s, limits, retry, rules)

        run = functools.partial(self._run_job, source, journal, output, work=work)
        return stream(Outcome, run, size=self.limits.concurrency, abort=self.abort)

    async def _run_job(
        self,
        requests: Requests,
        journal: str | Store | None,
        output: str | None,
        deliver: Deliver | None,
        work: Work | None = None,
    ) -> None:
        check_job(requests, journal, output, entered=self._fetch is not None, running=self._running)
        assert self._fetch is not None
        self._running = True  # (a stop() before the run is kept: the run ends at once)
        self._recorder = recorder = Recorder()
        recorder.unit = "request" if work is None else "item"
        if self._dns is not None:
            self._dns_at_start = self._dns.statistics()
        controls = self._controls
        self._run = run = Run(
            requests if isinstance(requests, Source) else IterableSource(requests),
            journal,
            output,
            deliver,
            self._fetch if work is None else work,
            recorder=recorder,
            controls=controls,
            follow_pause=lambda paused: self._pause(paused, share=False),
            description=self._description(output),
            artifacts=self._artifacts,
            limits=self.limits,
            retry=self.retry,
            crawl=self.crawl,
            shard=self._shard,
            whole_hosts=self._whole_hosts,
            rng=self._rng,
            keep_body=self.outputs.keep_body,
        )
        try:
            await run.execute()
        finally:
            recorder.interrupted = controls.stopping
            controls.stopping = False  # the stop was this run's; the next run starts afresh
            self._running = False

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
                "records": plain(self.outputs.records),
                "user_agent": self._user_agent,
                "headers": sorted(name for name in session.headers if name.lower() != "user-agent"),
                "fail_http": self._fail_http,
                "verify_tls": session.verify_tls,
                "cookies": session.cookies,
                "transport": session.transport,
                "proxy": _without_user(self._proxies.fixed),
                "proxy_env": {
                    scheme: _without_user(url) for scheme, url in self._proxies.environment.items()
                },
                "resolve": plain(session.resolve or {}),
                "output": absolute(output),
                "save_bodies": absolute(self.outputs.bodies),
                "warc": absolute(self.outputs.warc),
                "shard": None if self._shard is None else [self._shard.index, self._shard.count],
                # The longest one attempt may last (a shared job's lease outlives it by this).
                "attempt_max_s": max(
                    [self.timeouts.total_s]
                    + [p.timeouts.total_s for p in self.politeness.hosts.values() if p.timeouts]
                ),
            }
        )


def absolute(path: str | None) -> str | None:
    return path if path is None or path == "-" else os.path.abspath(path)


def _without_user(proxy: str | None) -> str | None:
    return None if proxy is None else str(URL(proxy).with_user(None))
