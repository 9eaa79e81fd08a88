"""The work a run's workers do for each job: a *task* makes one attempt at it.

Two kinds of task: the HTTP fetch (:class:`shoal.fetching.Fetcher`, the default, with
robots.txt before it and the user's handler after it) and the call of a user's coroutine
(:class:`shoal.engine.calls.Call`, for ``shoal.map``). Both go through the same worker
loop, retries, journal and counts; :class:`Work` says which one a run does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from shoal.config import Limits, Politeness, Records, RetryPolicy, Timeouts
from shoal.engine.calls import Call, Function
from shoal.errors import ConfigError
from shoal.fetching import Fetcher, Robots, SessionSettings, open_transport
from shoal.fetching.deadlines import Watchdog, tick_for
from shoal.fetching.proxies import Proxies
from shoal.job import Job
from shoal.outcome import Finished
from shoal.result import Result
from shoal.scheduling import HostRules
from shoal.sinks.artifacts import Artifacts
from shoal.sources import FileSource, ItemKeys, IterableSource, Source
from shoal.sources.items import MAP_INPUT

#: A user's async callback, run on each final response inside the worker slot. It reads the
#: result (its body too), may return a JSON value kept as ``data``, or raise
#: :class:`shoal.Rejected` to fail the request (optionally retrying it first).
Handler = Callable[[Result], Awaitable[Any]]


class Task(Protocol):
    """A kind of work the engine runs for a job: fetching a URL is the default one, a
    mapped coroutine (:class:`shoal.engine.calls.Call`) another."""

    async def run(self, job: Job) -> Finished:
        """Make one attempt at ``job`` (``job.attempts`` already counts it).

        When ``job.on_sent`` is set, call it with the job as the work reaches its host
        (a request is sent): the host's pace counts from then. A task that never calls it
        has its attempt's end taken as that moment.
        """
        ...


@dataclass(frozen=True, slots=True)
class Work:
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


def fetch_work(
    opened: contextlib.AsyncExitStack,
    settings: SessionSettings,
    *,
    limits: Limits,
    timeouts: Timeouts,
    records: Records,
    politeness: Politeness,
    rules: HostRules,
    proxies: Proxies,
    user_agent: str,
    fail_http: bool,
    keep_body: bool,
    handler: Handler | None,
    artifacts: Artifacts,
    on_crawl_delay: Callable[[str, float], None],
) -> Work:
    """The work of a fetch run: the fetch, robots.txt before it (when ``politeness``
    respects it) and the ``handler`` after it; through a transport and a deadline watchdog
    that outlive the runs (closed by ``opened``, the engine's)."""
    if settings.transport == "wire" and proxies.varies:
        raise ConfigError(
            "transport",
            "the wire transport sends through no proxy yet, and the proxy environment"
            " (http_proxy, https_proxy, all_proxy) names one: ignore it (--no-proxy-env),"
            " or use the aiohttp transport",
        )
    transport = open_transport(settings)
    opened.push_async_callback(transport.close)
    every = [timeouts]
    every += [p.timeouts for p in politeness.hosts.values() if p.timeouts is not None]
    watchdog = Watchdog(tick_for(every))
    opened.callback(watchdog.close)
    task = Fetcher(
        transport,
        limits=limits,
        timeouts=timeouts,
        watchdog=watchdog,
        fail_http=fail_http,
        keep_body=keep_body or handler is not None,
        proxies=proxies,
        rules=None if rules.uniform else rules,
        bodies=artifacts.bodies,
        archive=artifacts.spool,
        budget=artifacts.budget,
        records=records,
    )
    robots = None
    if politeness.respect_robots:
        robots = Robots(
            transport,
            user_agent=user_agent,
            timeout_s=min(timeouts.total_s, 30.0),
            on_crawl_delay=on_crawl_delay if politeness.robots_crawl_delay else None,
        )
    return Work(task, rules, robots, handler)


def map_work(
    function: Function,
    items: Iterable[Any] | AsyncIterable[Any] | FileSource,
    key: Callable[[Any], object] | None,
    group: Callable[[Any], object] | None,
    timeout_s: float | None,
    limits: Limits,
    retry: RetryPolicy,
    rules: HostRules,
) -> tuple[Source, Work]:
    """The source and the work of a map over ``items`` (a :class:`FileSource` is read as
    JSON items through a view of it: the caller's source is left as it was)."""
    if isinstance(items, str | bytes):
        raise TypeError("items must be an iterable of items, not one string")
    if timeout_s is not None and not timeout_s > 0:
        raise ConfigError("timeout_s", "must be above 0")
    task = Call(function, timeout_s=timeout_s, retry_on=retry.on_exceptions)
    keys = ItemKeys(key, group)
    source: Source
    if isinstance(items, FileSource):
        source = items.items(keys, f"{map_name(function)} {items.name}")
    else:
        source = IterableSource(items, name=map_name(function), parse=keys.entry)
    if group is None:  # one bucket for all: only the concurrency bounds it
        return source, Work(task, HostRules(rules.politeness, limits.concurrency), split_caps=False)
    return source, Work(task, rules)


def map_name(function: Function) -> str:
    """The journal's name for a map's input: the function's, so that a journal is not
    resumed by another function."""
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{MAP_INPUT}{getattr(function, '__module__', None) or '?'}.{name}>"
