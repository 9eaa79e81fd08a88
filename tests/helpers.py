"""Helpers the test modules share: waiting on a condition, reading records, a free port,
an engine with the tests' settings, and the spacing of arrivals a server saw.

One copy of each (issue 29 item 7); the command-line helpers are in :mod:`tests.command`.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from shoal import Engine, Network, Outputs, Result, RetryPolicy, Statistics, Timeouts
from shoal.engine import Requests
from shoal.scheduling.hosts import LATE_CARRY_MAX_S
from tests.conftest import resolver

#: Retries quickly: a retry that waits ~1 s can only be the server's Retry-After.
FAST_RETRY = RetryPolicy(retries=2, backoff_base_s=0.01, backoff_max_s=0.02)
TIMEOUTS = Timeouts(total_s=10, connect_s=2, read_s=10)
#: Slack for timer resolution and delivery noise on a lower bound of spacing (seconds).
SLACK_S = 0.010


async def wait_until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Poll ``condition`` every 5 ms until it holds; fail after ``within_s`` seconds."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.005)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a file, one a line."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening on it (bound, then closed): connections
    to it are refused until something else takes it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_engine(**options: Any) -> Engine:
    """An engine resolving ``*.test`` to loopback, quick retries and the tests' timeouts,
    unless ``options`` say otherwise (with the shorthands of :func:`engine_options`)."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("timeouts", TIMEOUTS)
    options.setdefault("resolver", resolver())
    return Engine(**engine_options(options))


def engine_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for :class:`Engine`, with the tests' shorthands put in their value
    classes: ``keep_body`` in ``outputs``, ``resolver`` in ``network`` (unless it has one
    of its own) and ``seed`` in ``retry``."""
    options = dict(options)
    if "keep_body" in options:
        keep = options.pop("keep_body")
        options["outputs"] = replace(options.get("outputs") or Outputs(), keep_body=keep)
    if "resolver" in options:
        network = options.get("network") or Network()
        own = options.pop("resolver")
        if network.resolver is None:
            options["network"] = replace(network, resolver=own)
    if "seed" in options:
        seed = options.pop("seed")
        options["retry"] = replace(options.get("retry") or RetryPolicy(), seed=seed)
    return options


async def collect(
    engine: Engine,
    requests: Requests,
    within_s: float = 10,
    watch: Callable[[Statistics], None] | None = None,
    arrived: dict[str, float] | None = None,
) -> list[Result]:
    """Every result of a run of ``engine``, within ``within_s`` seconds. ``watch`` sees a
    statistics snapshot every few milliseconds; ``arrived`` gets the monotonic time each
    result reached the reader, by URL."""

    async def read() -> list[Result]:
        found = []
        async with engine.stream(requests) as results:
            async for result in results:
                if arrived is not None:
                    arrived[result.url] = time.monotonic()
                found.append(result)
        return found

    async def poll() -> None:
        assert watch is not None
        while True:
            watch(engine.statistics())
            await asyncio.sleep(0.005)

    poller = None if watch is None else asyncio.create_task(poll())
    try:
        return await asyncio.wait_for(read(), within_s)
    finally:
        if poller is not None:
            poller.cancel()
            await asyncio.wait([poller])


async def fetch_all(
    requests: Requests,
    within_s: float = 10,
    *,
    make: Callable[..., Engine] = make_engine,
    **options: Any,
) -> list[Result]:
    """Every result of ``requests`` through an engine ``make(**options)`` builds (a
    :func:`make_engine` unless told)."""
    async with make(**options) as engine:
        return await collect(engine, requests, within_s)


def gaps(times: Sequence[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def assert_spaced(
    times: Sequence[float],
    interval_s: float,
    *,
    burst: int = 1,
    carry_s: float = LATE_CARRY_MAX_S,
    slack_s: float = SLACK_S,
    first_slack_s: float | None = None,
) -> None:
    """No window of the arrivals holds more than a rate of ``1/interval_s`` with ``burst``
    allows: arrival ``j`` is at least ``(j - i - burst + 1) * interval_s`` after arrival
    ``i``, less ``carry_s`` (the lateness a request may hand on to the next, see
    ``HostControl.sent``) and ``slack_s`` (timer slack; ``first_slack_s`` from the first
    arrival, when it is measured from a connection's set-up). Fewer than ``burst + 1``
    arrivals hold no gap to check: refused, so that a run which sent nothing cannot pass
    for a paced one."""
    assert len(times) > burst, f"{len(times)} arrivals: no gap to check with a burst of {burst}"
    for i, earlier in enumerate(times):
        slack = first_slack_s if i == 0 and first_slack_s is not None else slack_s
        for j in range(i + burst, len(times)):
            least = (j - i - burst + 1) * interval_s - carry_s - slack
            assert times[j] - earlier >= least, (
                f"arrivals {i} and {j} are {times[j] - earlier:.4f} s apart, "
                f"less than {least:.4f} s: {[round(g, 4) for g in gaps(times)]}"
            )
