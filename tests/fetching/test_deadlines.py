"""The watchdog that keeps every attempt's deadlines: on a fake clock, then against a real
server, where its timeouts end requests with the same kinds and messages as before."""

from __future__ import annotations

import asyncio
import time

import pytest

import shoal
from shoal import ErrorKind, RetryPolicy, Timeouts
from shoal.fetching.aiohttp_transport import WatchedProtocol
from shoal.fetching.deadlines import (
    CONNECT,
    READ,
    TOTAL,
    Attempt,
    Watchdog,
    tick_for,
)
from tests.conftest import resolver
from tests.dns_server import TestDNSServer
from tests.helpers import engine_options
from tests.servers import Misbehaving

TIMEOUTS = Timeouts(total_s=10, connect_s=2, read_s=3)
NO_RETRY = RetryPolicy(retries=0)


async def _parked() -> None:
    await asyncio.Event().wait()


def _protocol() -> WatchedProtocol:
    return WatchedProtocol(asyncio.get_running_loop())


async def test_connect_deadline_applies_until_connected() -> None:
    task = asyncio.create_task(_parked())
    attempt = Attempt(task, 100.0, TIMEOUTS)
    assert attempt.due(101.9) is None
    assert attempt.due(102.0) == CONNECT
    attempt.protocol = _protocol()  # connected: only total and between-reads remain
    assert attempt.due(102.0) is None
    task.cancel()


async def test_between_reads_counts_only_while_waiting_on_the_server() -> None:
    task = asyncio.create_task(_parked())
    attempt = Attempt(task, 100.0, TIMEOUTS)
    attempt.protocol = _protocol()
    assert attempt.due(105.0) is None  # request not sent yet: no read deadline armed
    attempt.reading, attempt.last_read = True, 105.0
    assert attempt.due(107.9) is None
    assert attempt.due(108.0) == READ
    attempt.touch(107.0)
    assert attempt.due(109.9) is None
    attempt.reading = False  # the body is complete
    assert attempt.due(109.9) is None
    assert attempt.due(110.0) == TOTAL  # the total deadline holds to the end
    task.cancel()


async def test_watchdog_cancels_an_expired_attempt_and_only_that_one() -> None:
    watchdog = Watchdog(tick_s=60)
    started: dict[str, Attempt] = {}

    async def run(name: str, timeouts: Timeouts) -> str:
        attempt = started[name] = watchdog.start(timeouts)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if attempt.timed_out():
                return "timed out"
            raise
        finally:
            watchdog.end(attempt)
        return "done"

    short = asyncio.create_task(run("short", Timeouts(total_s=5, connect_s=1, read_s=1)))
    long = asyncio.create_task(run("long", TIMEOUTS))
    await asyncio.sleep(0)
    now = asyncio.get_running_loop().time()
    ended = watchdog.check(now + 1.5)
    assert ended == [started["short"]] and started["short"].expired == CONNECT
    assert await short == "timed out"
    assert not long.done()
    long.cancel()  # a cancellation from elsewhere is not taken for a timeout
    with pytest.raises(asyncio.CancelledError):
        await long
    watchdog.close()


async def test_a_cancellation_from_elsewhere_wins_over_an_expired_deadline() -> None:
    watchdog = Watchdog(tick_s=60)
    attempts: list[Attempt] = []

    async def run() -> None:
        attempt = watchdog.start(TIMEOUTS)
        attempts.append(attempt)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            assert not attempt.timed_out()
            raise

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    task.cancel()  # the engine aborts ...
    watchdog.check(asyncio.get_running_loop().time() + 60)  # ... as the deadline passes
    with pytest.raises(asyncio.CancelledError):
        await task
    watchdog.close()


async def test_a_stall_of_the_loop_is_not_held_against_connect_or_read() -> None:
    watchdog = Watchdog(tick_s=0.01)
    task = asyncio.create_task(_parked())
    waiting = Attempt(task, 100.0, TIMEOUTS)  # connecting: due at 102
    reading = Attempt(task, 100.0, TIMEOUTS)
    reading.protocol, reading.reading, reading.last_read = _protocol(), True, 101.0
    watchdog._attempts |= {waiting, reading}
    watchdog.stalled(1.5, 104.0)  # nothing ran from 102.5 to 104
    assert waiting.connect_due == pytest.approx(103.5) and waiting.due(103.4) is None
    assert reading.last_read == pytest.approx(102.5) and reading.due(105.4) is None
    assert reading.due(105.5) == READ
    assert waiting.total_due == reading.total_due == 110.0  # the total deadline stays
    recent = Attempt(task, 103.9, TIMEOUTS)
    recent.protocol, recent.reading, recent.last_read = _protocol(), True, 103.9
    watchdog._attempts.add(recent)
    watchdog.stalled(1.0, 104.0)
    assert recent.last_read == 104.0  # never later than now
    task.cancel()
    watchdog.close()


async def test_a_blocked_loop_does_not_time_out_an_answer_that_came_meanwhile(
    server: Misbehaving,
) -> None:
    # The server answers after 0.25 s; the loop is blocked from 0.1 s to 0.7 s, longer than
    # the between-reads timeout, so the answer comes once the loop runs again, just after
    # the watchdog's late tick: that tick must not take the stall for a silent server.
    timeouts = Timeouts(total_s=5, connect_s=2, read_s=0.3)
    async with shoal.Engine(
        timeouts=timeouts, network=shoal.Network(resolver=resolver()), retry=NO_RETRY
    ) as engine:

        async def block_later() -> None:
            await asyncio.sleep(0.1)
            time.sleep(0.6)  # noqa: ASYNC251  (the point: a long callback of the client's own)

        blocker = asyncio.create_task(block_later())
        async with engine.stream([server.url("/delay?s=0.25")]) as results:
            [result] = [r async for r in results]
        await blocker
    assert result.ok and result.status == 200, result.error


def test_tick_is_a_small_part_of_the_shortest_timeout() -> None:
    assert tick_for([Timeouts(total_s=30, connect_s=10, read_s=10)]) == 0.5
    assert tick_for([TIMEOUTS, Timeouts(total_s=1, connect_s=0.8, read_s=0.4)]) == 0.025
    assert tick_for([Timeouts(total_s=0.01, connect_s=0.01, read_s=0.01)]) == 0.005


async def _fetch(url: str, timeouts: Timeouts, **options: object) -> shoal.Result:
    options.setdefault("resolver", resolver())  # (None: shoal's own)
    engine = shoal.Engine(
        retry=RetryPolicy(retries=0),
        timeouts=timeouts,
        **engine_options(options),
    )
    async with engine, engine.stream([url]) as results:
        found = [result async for result in results]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("path", ["/hang", "/hang-body"])
async def test_a_silent_server_ends_with_the_between_reads_timeout(
    server: Misbehaving, path: str
) -> None:
    started = time.monotonic()
    result = await _fetch(server.url(path), Timeouts(total_s=5, connect_s=1, read_s=0.3))
    assert result.error is not None
    assert result.error.kind is ErrorKind.TIMEOUT
    assert result.error.message == "Timeout on reading data from socket"
    assert 0.3 <= time.monotonic() - started < 2


async def test_a_slow_but_steady_body_is_not_a_read_timeout(server: Misbehaving) -> None:
    # Each piece comes well within the between-reads timeout (a tenth of it), the whole
    # body well past it.
    result = await _fetch(
        server.url("/trickle?n=15&every=0.1"), Timeouts(total_s=10, connect_s=1, read_s=1)
    )
    assert result.ok, result.error
    assert result.elapsed_ms is not None and result.elapsed_ms >= 1400


async def test_a_total_deadline_ends_a_trickle(server: Misbehaving) -> None:
    started = time.monotonic()
    result = await _fetch(
        server.url("/trickle?n=100&every=0.05"), Timeouts(total_s=0.5, connect_s=1, read_s=1)
    )
    assert result.error is not None
    assert result.error.kind is ErrorKind.TIMEOUT
    assert result.error.message == "attempt exceeded the total timeout (0.5 s)"
    assert time.monotonic() - started < 2


async def test_a_connection_not_made_in_time_is_a_connect_timeout(server: Misbehaving) -> None:
    # The tests' DNS server answers ``slow-*`` names after ``slow_s``: a real lookup that
    # outlasts the connect timeout (the DNS timeout itself is longer still).
    with TestDNSServer(slow_s=3.0) as dns:
        started = time.monotonic()
        result = await _fetch(
            server.url("/ok", host="slow-a.test"),
            Timeouts(total_s=5, connect_s=0.3, read_s=1),
            resolver=None,
            network=shoal.Network(
                dns=shoal.DNSSettings(servers=(dns.address,), timeout_s=5.0, tries=1)
            ),
        )
        elapsed = time.monotonic() - started
        assert dns.zone.count("slow-a.test") >= 1  # the name really was asked for
    assert result.error is not None
    assert result.error.kind is ErrorKind.TIMEOUT
    assert result.error.message.startswith("Connection timeout to host http://slow-a.test:")
    assert "(connect timeout 0.3 s)" in result.error.message
    assert elapsed < 2


async def test_a_per_host_timeout_override_is_kept(server: Misbehaving) -> None:
    quick = shoal.HostPolicy(timeouts=Timeouts(total_s=5, connect_s=1, read_s=0.2))
    started = time.monotonic()
    result = await _fetch(
        server.url("/hang", host="b.test"),
        Timeouts(total_s=30, connect_s=10, read_s=10),
        politeness=shoal.Politeness(hosts={"b.test": quick}),
    )
    assert result.error is not None and result.error.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 2
