"""Running shoal over the chaos server and checking the run: shared by the tests and the
benchmark script ``bench/chaos.py``.

:func:`run_library` runs the engine (library API) over requests ``0 .. count - 1`` of a
:class:`ChaosServer`, checks every final result as it is streamed (so the checker holds only
an attempt count per request, not the results), and reports the time taken against the
bound derived from the timeouts, and the peak growth of resident memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Self

from shoal import (
    Engine,
    Limits,
    Network,
    Politeness,
    RetryPolicy,
    StaticResolver,
    Statistics,
    Timeouts,
)
from tests.chaos.chaos_server import ChaosServer, Fault
from tests.chaos.expectations import Checker, Problems, Rule, Settings, expect, time_bound_s

MiB = 1024 * 1024
#: Every host name of the chaos URLs goes to loopback; nothing else resolves.
RESOLVE = {"*.test": "127.0.0.1"}

#: Faults where the connection fails before the response. aiohttp would resend such an
#: idempotent request once by itself, inside one attempt; shoal turns that off, so one
#: attempt is one request on the wire, and these are checked exactly like the rest.
RESET_BEFORE_RESPONSE = frozenset({Fault.RESET_BEFORE_HEADERS, Fault.CLOSE_BEFORE_HEADERS})
#: Faults whose hosts shoal parks and gives up when ``dead_after`` is on (``refused``). Their
#: hosts carry nothing else (``FAMILY`` in ``chaos_server.py``), so no other request depends
#: on the order in which that happens.
GIVEN_UP = frozenset({Fault.REFUSED})


def loose_rules(
    politeness: Politeness, resent: frozenset[Fault] = frozenset()
) -> dict[Fault, Rule]:
    """Which faults a run with ``politeness`` can only check by a rule (``resent``: faults
    whose requests may go out twice per attempt; none, since shoal turns resends off)."""
    rules = dict.fromkeys(resent, Rule.RESENT)
    if politeness.dead_after > 0:
        rules.update(dict.fromkeys(GIVEN_UP, Rule.GIVEN_UP))
    return rules


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosConfig:
    """The client settings of a chaos run: short timeouts, quick retries."""

    limits: Limits = field(
        default_factory=lambda: Limits(
            concurrency=64, per_host=8, max_bytes=1 * MiB, max_redirects=3
        )
    )
    timeouts: Timeouts = field(
        default_factory=lambda: Timeouts(total_s=1.0, connect_s=0.3, read_s=0.3)
    )
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            retries=2, backoff_base_s=0.001, backoff_max_s=0.01, retry_after_max_s=2.0
        )
    )
    #: Shoal's defaults, but a parked host waits 50 ms instead of 30 s before its probe.
    politeness: Politeness = field(default_factory=lambda: Politeness(dead_cooldown_s=0.05))
    fail_http: bool = False
    #: Requests per second the time bound allows for each request, far below the real rate.
    floor_rate: float = 200.0
    #: Resident memory a run may add, whatever its size, and ``memory_per_request`` more for
    #: each request: the checker's and the server's bookkeeping (about 0.3 KiB; shoal keeps
    #: nothing per request in memory with a journal, and a kept result is over 1 KiB).
    memory_budget: int = 48 * MiB
    memory_per_request: int = 512

    @property
    def settings(self) -> Settings:
        return Settings.of(self.limits, self.retry, fail_http=self.fail_http)

    def time_bound_s(self, server: ChaosServer, count: int) -> float:
        expected = (expect(server, index, self.settings) for index in range(count))
        return time_bound_s(
            expected,
            self.timeouts,
            concurrency=self.limits.concurrency,
            per_host=self.limits.per_host,
            floor_rate=self.floor_rate,
            park_s=self.park_s(),
        )

    def park_s(self) -> float:
        """How long a dead host stays parked in all before it is given up."""
        politeness = self.politeness
        if politeness.dead_after == 0:
            return 0.0
        doublings: int = 2**politeness.dead_probes - 1
        return politeness.dead_cooldown_s * doublings

    def memory_bound(self, count: int) -> int:
        return self.memory_budget + self.memory_per_request * count

    def max_elapsed_ms(self) -> float:
        """The longest one attempt may take: its total timeout, and 2 s for a busy loop."""
        return (self.timeouts.total_s + 2.0) * 1000


# -- memory ------------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) for this process, where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _peak() -> int | None:
    try:
        with open("/proc/self/status") as status:
            found = re.search(r"VmHWM:\s+(\d+) kB", status.read())
    except OSError:
        return None
    return None if found is None else int(found.group(1)) * 1024


class MemoryWatch:
    """The peak resident memory of the process inside the block, above its start.

    Linux only (``/proc``): it samples the RSS every 20 ms and, where the kernel lets the
    process reset its peak mark, also reads that exact peak at the end. ``growth`` is None
    where neither is available.
    """

    def __init__(self) -> None:
        self.baseline: int | None = None
        self.peak: int | None = None
        self._exact = False
        self._sampler: asyncio.Task[None] | None = None

    @property
    def growth(self) -> int | None:
        if self.baseline is None or self.peak is None:
            return None
        return max(0, self.peak - self.baseline)

    async def __aenter__(self) -> Self:
        self.baseline = self.peak = _rss()
        if self.baseline is not None:
            self._exact = _reset_peak()
            self._sampler = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            self._note(_rss())
            await asyncio.sleep(0.02)

    def _note(self, value: int | None) -> None:
        if value is not None and (self.peak is None or value > self.peak):
            self.peak = value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        self._note(_rss())
        if self._exact:
            self._note(_peak())


# -- a library run -----------------------------------------------------------------------------


@dataclass(slots=True)
class RunReport:
    """What a chaos run did and what its checks found."""

    count: int
    elapsed_s: float
    bound_s: float
    memory_growth: int | None
    memory_bound: int
    statistics: Statistics
    problems: Problems
    faults: dict[str, int]
    #: Requests that ended unsent because their host was given up.
    unsent: int

    def summary(self) -> str:
        memory = "n/a" if self.memory_growth is None else f"{self.memory_growth / MiB:.1f} MiB"
        rate = self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (
            f"{self.count:,} requests in {self.elapsed_s:.1f} s ({rate:,.0f}/s; bound "
            f"{self.bound_s:.0f} s), {self.statistics.retries:,} retries, peak memory growth "
            f"{memory} (bound {self.memory_bound / MiB:.0f} MiB), {len(self.faults)} faults, "
            f"{self.unsent} unsent (host given up), {self.problems.count} mismatches"
        )


async def run_library(
    server: ChaosServer,
    count: int,
    config: ChaosConfig,
    *,
    journal: Path | None = None,
    resent: frozenset[Fault] = frozenset(),
) -> RunReport:
    """Run the engine over requests ``0 .. count - 1`` and check every result."""
    checker = Checker(
        server,
        config.settings,
        loose=loose_rules(config.politeness, resent),
        max_elapsed_ms=config.max_elapsed_ms(),
    )
    bound = config.time_bound_s(server, count)
    engine = Engine(
        network=Network(resolver=StaticResolver(RESOLVE)),
        limits=config.limits,
        timeouts=config.timeouts,
        retry=replace(config.retry, seed=server.chaos.seed),
        fail_http=config.fail_http,
        politeness=config.politeness,
    )

    async def run() -> None:
        async with (
            engine,
            engine.stream(
                server.urls(count), journal=None if journal is None else str(journal)
            ) as results,
        ):
            async for result in results:
                checker.add(result.to_record())

    started = time.monotonic()
    async with MemoryWatch() as memory:
        try:
            await asyncio.wait_for(run(), bound)
        except TimeoutError:
            checker.problems.add("time", f"the run did not end within its bound of {bound:.1f} s")
    elapsed = time.monotonic() - started
    checker.finish(count)
    statistics = engine.statistics()
    checker.check_statistics(statistics)
    report = RunReport(
        count=count,
        elapsed_s=elapsed,
        bound_s=bound,
        memory_growth=memory.growth,
        memory_bound=config.memory_bound(count),
        statistics=statistics,
        problems=checker.problems,
        faults=dict(checker.faults),
        unsent=checker.unsent,
    )
    if report.memory_growth is not None and report.memory_growth > report.memory_bound:
        checker.problems.add(
            "memory",
            f"peak resident memory grew by {report.memory_growth / MiB:.1f} MiB, "
            f"more than {report.memory_bound / MiB:.1f} MiB",
        )
    return report
