"""Per-host politeness, proved from the server's side.

Each test runs a real engine against real servers on 127.0.0.1 and reads what the server
saw: when each request arrived per ``Host``, how many were in flight at once, which headers
came. Lower bounds on spacing are strict (a rate must never be exceeded beyond a few
milliseconds of timer slack); upper bounds are generous, since the machine may be busy.
Spacing is measured by the ``arrivals`` server (:mod:`tests.arrival_server`), in a process
of its own, so a stall of the test's event loop cannot shorten a gap it measures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.web_request import Request as WebRequest

from shoal import (
    DNSSettings,
    Engine,
    ErrorKind,
    HostPolicy,
    HostState,
    Limits,
    Network,
    Politeness,
    Request,
    Result,
    RetryPolicy,
    Statistics,
    Timeouts,
)
from shoal.engine import Requests
from shoal.scheduling.hosts import LATE_CARRY_MAX_S
from tests import helpers
from tests.arrival_server import ArrivalServer
from tests.dns_server import TestDNSServer
from tests.helpers import SLACK_S, assert_spaced, collect, free_port, gaps
from tests.servers import Misbehaving, serve

#: Room on an upper bound: the machine may be loaded by other test suites.
ROOM_S = 0.25
NO_RETRY = RetryPolicy(retries=0)
FAST_RETRY = RetryPolicy(retries=2, backoff_base_s=0.001, backoff_max_s=0.002)


def make_engine(**options: Any) -> Engine:
    """:func:`tests.helpers.make_engine` with quicker retries and a fixed seed."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("seed", 1234)
    return helpers.make_engine(**options)


async def fetch_all(requests: Requests, within_s: float = 15, **options: Any) -> list[Result]:
    return await helpers.fetch_all(requests, within_s, make=make_engine, **options)


async def fetch_paced(
    server: ArrivalServer, requests: Requests, warm: Mapping[str, int], **options: Any
) -> list[Result]:
    """``fetch_all`` for a run whose spacing is measured at the server.

    Before the run, the same engine opens ``warm[host]`` keep-alive connections to each
    host (then forgotten in the server's log), so every measured request reuses one and
    the spacing measured is the pace alone (that a new connection's set-up does not
    shorten a gap is ``test_connection_setup_does_not_shorten_the_first_gap``'s part).
    """
    async with make_engine(**options) as engine:
        await collect(
            engine,
            [
                server.url(f"/delay?s=0.05&warm={n}", host=host)
                for host, count in warm.items()
                for n in range(count)
            ],
        )
        for host in warm:
            await server.forget(host)
        return await collect(engine, requests)


@pytest.mark.parametrize(("times", "burst"), [([], 1), ([0.0], 1), ([0.0, 0.0, 0.0], 3)])
def test_assert_spaced_refuses_too_few_arrivals_to_hold_a_gap(
    times: list[float], burst: int
) -> None:
    with pytest.raises(AssertionError, match="no gap to check"):
        assert_spaced(times, 0.1, burst=burst)


def sorted_times(server: Misbehaving, host: str) -> list[float]:
    return sorted(server.log.hosts[host].times)


async def arrival_times(server: ArrivalServer, host: str) -> list[float]:
    """When ``host``'s requests arrived at ``server``, in order, stamped in its process."""
    return sorted((await server.read_log()).hosts[host].times)


# -- rate, burst, delay ------------------------------------------------------------------------


async def test_per_host_rate_spaces_each_host_and_hosts_run_in_parallel(
    arrivals: ArrivalServer,
) -> None:
    rate, count = 20.0, 12
    hosts = ("r1.test", "r2.test")
    urls = [arrivals.url(f"/ok?n={n}", host=host) for n in range(count) for host in hosts]
    began = time.monotonic()
    results = await fetch_paced(
        arrivals,
        urls,
        dict.fromkeys(hosts, 1),
        limits=Limits(concurrency=100, per_host=8),
        politeness=Politeness(per_second=rate),
    )
    took = time.monotonic() - began
    assert len(results) == 2 * count and all(r.ok and r.status == 200 for r in results)
    expected_span = (count - 1) / rate
    firsts, lasts = [], []
    for host in hosts:
        times = await arrival_times(arrivals, host)
        assert len(times) == count
        assert min(gaps(times)) >= 1 / rate - LATE_CARRY_MAX_S - SLACK_S, gaps(times)
        assert_spaced(times, 1 / rate)
        span = times[-1] - times[0]
        assert expected_span - SLACK_S <= span <= expected_span + ROOM_S, span
        firsts.append(times[0])
        lasts.append(times[-1])
    # The hosts were paced side by side, not one after the other.
    assert max(firsts) - min(firsts) < 1 / rate
    assert max(lasts) - min(firsts) <= expected_span + ROOM_S
    assert took < 2 * expected_span, took


async def test_burst_lets_the_first_requests_go_together_then_spaces_them(
    arrivals: ArrivalServer,
) -> None:
    rate, burst, count = 10.0, 3, 8
    interval = 1 / rate
    urls = [arrivals.url(f"/ok?n={n}", host="burst.test") for n in range(count)]
    results = await fetch_paced(
        arrivals,
        urls,
        {"burst.test": burst},
        limits=Limits(concurrency=50, per_host=8),
        politeness=Politeness(per_second=rate, burst=burst),
    )
    assert all(r.ok for r in results)
    times = await arrival_times(arrivals, "burst.test")
    assert len(times) == count
    # The first three together: well within one interval.
    assert times[burst - 1] - times[0] < interval / 2, gaps(times)
    # Then one interval apart, counted from the first: no second burst.
    for k in range(burst, count):
        least = (k - burst + 1) * interval - LATE_CARRY_MAX_S - SLACK_S
        assert times[k] - times[0] >= least, (k, gaps(times))
    assert min(gaps(times)[burst - 1 :]) >= interval - LATE_CARRY_MAX_S - SLACK_S, gaps(times)
    assert_spaced(times, interval, burst=burst)
    assert times[-1] - times[0] <= (count - burst) * interval + ROOM_S


async def test_delay_with_jitter_keeps_gaps_between_delay_and_delay_stretched(
    arrivals: ArrivalServer,
) -> None:
    delay, jitter, count = 0.04, 0.5, 12
    urls = [arrivals.url(f"/ok?n={n}", host="calm.test") for n in range(count)]
    results = await fetch_paced(
        arrivals,
        urls,
        {"calm.test": 1},
        limits=Limits(concurrency=50, per_host=8),
        politeness=Politeness(delay_s=delay, jitter=jitter),
    )
    assert all(r.ok for r in results)
    between = gaps(await arrival_times(arrivals, "calm.test"))
    assert len(between) == count - 1
    assert min(between) >= delay - SLACK_S, between
    assert max(between) <= delay * (1 + jitter) + ROOM_S, between
    # The jitter is there: on average a gap is stretched by about half the jitter (a
    # quarter is far below what the seeded draws give, and far above timer lateness).
    assert sum(between) / len(between) >= delay * (1 + jitter / 4), between
    assert max(between) - min(between) >= delay * jitter / 4, between


async def test_delay_without_jitter_is_exact_least_gap(arrivals: ArrivalServer) -> None:
    delay, count = 0.05, 8
    urls = [arrivals.url(f"/ok?n={n}", host="steady.test") for n in range(count)]
    results = await fetch_paced(
        arrivals,
        urls,
        {"steady.test": 1},
        limits=Limits(concurrency=50, per_host=8),
        politeness=Politeness(delay_s=delay),
    )
    assert len(results) == count and all(r.ok for r in results)
    times = await arrival_times(arrivals, "steady.test")
    assert len(times) == count
    assert min(gaps(times)) >= delay - SLACK_S, gaps(times)
    assert times[-1] - times[0] >= (count - 1) * delay - SLACK_S


@pytest.mark.parametrize(("rate", "delay"), [(20.0, 0.1), (5.0, 0.05)])
async def test_rate_and_delay_together_the_slower_wins(
    arrivals: ArrivalServer, rate: float, delay: float
) -> None:
    count = 5
    urls = [arrivals.url(f"/ok?n={n}", host="both.test") for n in range(count)]
    results = await fetch_paced(
        arrivals,
        urls,
        {"both.test": 1},
        limits=Limits(concurrency=50, per_host=8),
        politeness=Politeness(per_second=rate, delay_s=delay),
    )
    assert sorted(r.url for r in results) == sorted(urls) and all(r.ok for r in results)
    times = await arrival_times(arrivals, "both.test")
    assert len(times) == count
    assert_spaced(times, max(1 / rate, delay))


async def test_connection_setup_does_not_shorten_the_first_gap(arrivals: ArrivalServer) -> None:
    # The tests' DNS server answers ``slow-*`` names after ``slow_s``: each new connection
    # waits on a real lookup before it is made.
    rate, count = 4.0, 3
    host = "slow-far.test"
    urls = [arrivals.url(f"/ok?n={n}", host=host) for n in range(count)]
    with TestDNSServer(slow_s=0.2) as dns:
        results = await fetch_all(
            urls,
            politeness=Politeness(per_second=rate),
            resolver=None,
            network=Network(dns=DNSSettings(servers=(dns.address,), timeout_s=5.0, tries=1)),
        )
        assert dns.zone.count(host) >= 1  # the slow name really was looked up
    assert len(results) == count and all(r.ok for r in results)
    times = await arrival_times(arrivals, host)
    assert len(times) == count
    assert_spaced(times, 1 / rate)


# -- overrides by host pattern -----------------------------------------------------------------


async def test_rate_override_by_exact_name_and_wildcard(arrivals: ArrivalServer) -> None:
    rate, count = 10.0, 5
    politeness = Politeness(
        hosts={
            "slow.test": HostPolicy(per_second=rate),
            "*.paced.test": HostPolicy(per_second=rate),
        }
    )
    paced = ("slow.test", "paced.test", "a.paced.test", "b.a.paced.test")
    free = ("free.test", "notpaced.test", "a.slow.test")  # no pattern matches these
    # Two runs of the same settings: the free hosts' requests, all sent at once, would
    # otherwise hold up the client's sending of the paced hosts' first requests (one event
    # loop sends both) and make their first gaps look short.
    for hosts in (paced, free):
        urls = [arrivals.url(f"/ok?n={n}", host=host) for n in range(count) for host in hosts]
        results = await fetch_paced(
            arrivals,
            urls,
            dict.fromkeys(hosts, 1),
            limits=Limits(concurrency=100, per_host=8),
            politeness=politeness,
        )
        assert len(results) == len(urls) and all(r.ok for r in results)
    for host in paced:  # each paced host has its own pace
        times = await arrival_times(arrivals, host)
        assert len(times) == count
        assert_spaced(times, 1 / rate)
    starts = [(await arrival_times(arrivals, host))[0] for host in paced]
    assert max(starts) - min(starts) < 1 / rate  # side by side, not sharing one pace
    for host in free:
        times = await arrival_times(arrivals, host)
        assert len(times) == count
        assert times[-1] - times[0] < (count - 1) / rate / 2, (host, gaps(times))


async def test_in_flight_override_most_specific_pattern_wins(server: Misbehaving) -> None:
    politeness = Politeness(
        hosts={
            "*.cap.test": HostPolicy(max_in_flight=3),
            "one.cap.test": HostPolicy(max_in_flight=1),
            "*": HostPolicy(max_in_flight=5),
        }
    )
    hosts = {"one.cap.test": 1, "cap.test": 3, "x.cap.test": 3, "other.test": 5}
    urls = [server.url(f"/delay?s=0.1&n={n}", host=host) for n in range(6) for host in hosts]
    results = await fetch_all(
        urls, limits=Limits(concurrency=100, per_host=8), politeness=politeness
    )
    assert all(r.ok for r in results)
    for host, cap in hosts.items():
        load = server.log.hosts[host]
        assert load.requests == 6
        assert load.peak == cap, (host, load.peak)


def headers_seen_by_host(server: Misbehaving) -> dict[str, list[dict[str, str]]]:
    seen: dict[str, list[dict[str, str]]] = {}
    for headers in server.log.headers:
        seen.setdefault(headers["Host"].rsplit(":", 1)[0], []).append(headers)
    return seen


async def test_header_override_reaches_only_matching_hosts(server: Misbehaving) -> None:
    politeness = Politeness(
        hosts={
            "*.hdr.test": HostPolicy(headers={"X-Policy": "wild", "X-Job": "replaced"}),
            "deep.hdr.test": HostPolicy(headers={"X-Deep": "yes"}),
        }
    )
    requests: list[str | Request] = [
        server.url("/echo", host="a.hdr.test"),
        server.url("/echo", host="deep.hdr.test"),
        server.url("/echo", host="plain.test"),
        Request(server.url("/echo?own=1", host="b.hdr.test"), headers={"X-Policy": "mine"}),
    ]
    results = await fetch_all(
        requests,
        politeness=politeness,
        network=Network(headers={"X-Job": "all"}),
        keep_body=True,
    )
    assert all(r.ok and r.status == 200 for r in results)
    seen = headers_seen_by_host(server)
    [wild] = seen["a.hdr.test"]
    assert wild["X-Policy"] == "wild" and wild["X-Job"] == "replaced"
    assert "X-Deep" not in wild
    [deep] = seen["deep.hdr.test"]  # the exact name adds to the wildcard's headers
    assert deep["X-Policy"] == "wild" and deep["X-Deep"] == "yes"
    [plain] = seen["plain.test"]
    assert plain["X-Job"] == "all"
    assert "X-Policy" not in plain and "X-Deep" not in plain
    [own] = seen["b.hdr.test"]  # the request's own header wins over the host's
    assert own["X-Policy"] == "mine"
    # One value per name, not the job's and the host's side by side.
    for result in results:
        echoed = orjson.loads(result.body or b"{}")["headers"]
        assert "," not in echoed.get("X-Job", ""), echoed


async def test_timeouts_override_applies_to_its_host_only(server: Misbehaving) -> None:
    impatient = Timeouts(total_s=0.2, connect_s=0.2, read_s=0.2)
    politeness = Politeness(hosts={"impatient.test": HostPolicy(timeouts=impatient)})
    urls = [
        server.url("/delay?s=0.5", host="impatient.test"),
        server.url("/delay?s=0.5", host="patient.test"),
    ]
    began = time.monotonic()
    results = {r.url: r for r in await fetch_all(urls, politeness=politeness, retry=NO_RETRY)}
    took = time.monotonic() - began
    short, long = results[urls[0]], results[urls[1]]
    assert short.error is not None and short.error.kind is ErrorKind.TIMEOUT, short.error
    assert short.status is None and short.attempts == 1
    assert short.elapsed_ms is not None and short.elapsed_ms < 450, short.elapsed_ms
    assert long.ok and long.status == 200
    assert took < 5


async def test_per_host_timeout_message_names_the_timeout_that_applied(
    server: Misbehaving,
) -> None:
    impatient = Timeouts(total_s=0.2, connect_s=5, read_s=5)
    politeness = Politeness(hosts={"impatient.test": HostPolicy(timeouts=impatient)})
    [result] = await fetch_all(
        [server.url("/delay?s=0.5", host="impatient.test")],
        politeness=politeness,
        retry=NO_RETRY,
    )
    assert result.error is not None and result.error.kind is ErrorKind.TIMEOUT
    assert "0.2 s" in result.error.message, result.error.message


# -- Retry-After -------------------------------------------------------------------------------


async def test_retry_after_pauses_only_its_host(arrivals: ArrivalServer) -> None:
    pause_s = 1.0
    first = arrivals.url("/retry-after/ra?status=429&after=1&fail=1", host="a.test")
    others_a = [arrivals.url(f"/ok?n={n}", host="a.test") for n in range(5)]
    b_urls = [arrivals.url(f"/delay?s=0.03&n={n}", host="b.test") for n in range(12)]
    states: list[tuple[float, tuple[HostState, ...]]] = []
    delivered: dict[str, float] = {}

    def watch(stats: Statistics) -> None:
        states.append((time.monotonic(), stats.hosts))

    async with make_engine(limits=Limits(concurrency=20, per_host=1)) as engine:
        results = await collect(engine, [first, *others_a, *b_urls], watch=watch, arrived=delivered)

    assert len(results) == 18 and all(r.ok and r.status == 200 for r in results)
    [waited] = [r for r in results if r.url == first]
    assert waited.attempts == 2
    a_times = await arrival_times(arrivals, "a.test")
    assert len(a_times) == 7  # the 429, its retry, five others
    refused_at = a_times[0]  # per_host=1 and the 429 is first: it arrived first
    # Nothing reached host A during the pause.
    assert a_times[1] - refused_at >= pause_s - SLACK_S, gaps(a_times)
    # Host B went on meanwhile: all of it arrived, and its results came, during the pause.
    b_times = await arrival_times(arrivals, "b.test")
    assert len(b_times) == 12
    assert b_times[-1] < a_times[1], (b_times[-1] - refused_at, a_times[1] - refused_at)
    assert max(delivered[url] for url in b_urls) < a_times[1]
    # statistics() showed A as paused, with a wait, and never B.
    paused = [(seen, host) for seen, hosts in states for host in hosts if host.host == "a.test"]
    assert any(host.state == "paused" for _, host in paused), paused[:5]
    during = [host for seen, host in paused if refused_at + 0.1 < seen < a_times[1] - 0.1]
    assert during and all(host.state == "paused" for host in during), during[:5]
    assert all(0 < host.wait_s <= pause_s for host in during)
    assert all(host.queued >= 1 for host in during)
    assert not any(host.host == "b.test" for _, hosts in states for host in hosts)


async def test_retry_after_pause_applies_even_when_the_request_is_not_retried(
    arrivals: ArrivalServer,
) -> None:
    first = arrivals.url("/retry-after/nr?status=503&after=1&fail=1", host="a.test")
    after = arrivals.url("/ok", host="a.test")
    results = await fetch_all(
        [first, after], retry=NO_RETRY, limits=Limits(concurrency=4, per_host=1)
    )
    by_url = {r.url: r for r in results}
    assert by_url[first].status == 503 and by_url[first].attempts == 1
    assert by_url[after].ok and by_url[after].status == 200
    times = await arrival_times(arrivals, "a.test")
    assert len(times) == 2
    assert times[1] - times[0] >= 1.0 - SLACK_S, gaps(times)


async def test_retry_after_pause_is_capped_by_the_retry_policy(arrivals: ArrivalServer) -> None:
    # Retry-After: 2, but at most 0.3 s is honoured: the host waits 0.3 s, and the request
    # that was told to wait longer is final (its retries end).
    first = arrivals.url("/retry-after/cap?status=429&after=2&fail=1", host="a.test")
    after = arrivals.url("/ok", host="a.test")
    retry = RetryPolicy(retries=2, backoff_base_s=0.001, retry_after_max_s=0.3)
    results = await fetch_all([first, after], retry=retry, limits=Limits(per_host=1))
    by_url = {r.url: r for r in results}
    assert by_url[first].status == 429 and by_url[first].attempts == 1
    assert by_url[after].ok
    refused_at, next_at = await arrival_times(arrivals, "a.test")
    assert 0.3 - SLACK_S <= next_at - refused_at < 2.0 - ROOM_S, next_at - refused_at


# -- adaptive throttle -------------------------------------------------------------------------


@dataclass
class Arrivals:
    """What the answering server saw of one host: in flight at each arrival, and peak."""

    in_flight: int = 0
    peak: int = 0
    at_arrival: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


class Answering:
    """A server that answers ``/answer?status=N&s=S`` with status N after S seconds, and
    records, per ``Host``, how many requests were in flight when each one arrived.

    (The misbehaving server answers its statuses at once, so its in-flight counts never
    show a window; a slow answer makes the window visible.)
    """

    def __init__(self) -> None:
        self.hosts: dict[str, Arrivals] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str, host: str) -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/answer", self.answer)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def answer(self, request: WebRequest) -> web.StreamResponse:
        load = self.hosts.setdefault((request.host or "").rsplit(":", 1)[0], Arrivals())
        load.in_flight += 1
        load.peak = max(load.peak, load.in_flight)
        load.at_arrival.append(load.in_flight)
        load.times.append(time.monotonic())
        try:
            await asyncio.sleep(float(request.query.get("s", 0.05)))
            return web.Response(status=int(request.query.get("status", 200)), text="answer")
        finally:
            load.in_flight -= 1


@pytest.fixture
async def answering() -> AsyncIterator[Answering]:
    server = Answering()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _throttle_run(
    server: Answering, adaptive: bool, count: int
) -> tuple[list[Result], Statistics]:
    busy = [server.url(f"/answer?status=429&s=0.05&n={n}", "busy.test") for n in range(count)]
    calm = [server.url(f"/answer?status=200&s=0.05&n={n}", "calm.test") for n in range(count)]
    mixed = [url for pair in zip(busy, calm, strict=True) for url in pair]
    async with make_engine(
        limits=Limits(concurrency=100, per_host=8),
        politeness=Politeness(adaptive=adaptive),
        retry=NO_RETRY,
    ) as engine:
        results = await collect(engine, mixed)
        return results, engine.statistics()


async def test_adaptive_halves_the_window_of_a_host_answering_429(
    answering: Answering,
) -> None:
    count = 18
    results, stats = await _throttle_run(answering, adaptive=True, count=count)
    assert len(results) == 2 * count
    busy, calm = answering.hosts["busy.test"], answering.hosts["calm.test"]
    assert len(busy.at_arrival) == count
    assert max(busy.at_arrival[:8]) == 8  # the first window, before any answer came
    later = busy.at_arrival[8:]
    assert max(later) <= 4, busy.at_arrival  # halved on the first 429
    assert later[-3:] == [1, 1, 1], busy.at_arrival  # down to one at a time
    # At one in flight, each further 429 adds a delay between starts (50 ms, then 100 ms),
    # on top of the 50 ms an answer takes.
    assert busy.times[-1] - busy.times[-2] >= 0.1 - SLACK_S, gaps(busy.times)
    # The other host kept its full window all along.
    assert calm.peak == 8 and len(calm.at_arrival) == count
    assert max(calm.at_arrival[8:]) > 4, calm.at_arrival  # not halved
    [shown] = stats.hosts
    assert shown.host == "busy.test" and shown.state == "slowed", stats.hosts
    assert shown.cap < 8 and shown.delay_s > 0, shown


async def test_without_adaptive_a_429_host_keeps_its_window(answering: Answering) -> None:
    count = 18
    results, stats = await _throttle_run(answering, adaptive=False, count=count)
    assert len(results) == 2 * count
    assert all(r.status == 429 for r in results if "busy.test" in r.url)
    busy = answering.hosts["busy.test"]
    assert max(busy.at_arrival[8:16]) > 4, busy.at_arrival  # not halved
    assert answering.hosts["calm.test"].peak == 8
    assert stats.hosts == ()


async def test_adaptive_with_retries_on_429_statuses_still_finishes(
    server: Misbehaving,
) -> None:
    # /status/429 answers at once, with no Retry-After; 429 is retried by default. Kept
    # small: at one in flight, every further 429 doubles the host's delay.
    urls = [server.url(f"/status/429?n={n}", host="busy.test") for n in range(6)]
    urls += [server.url(f"/ok?n={n}", host="fine.test") for n in range(12)]
    async with make_engine(
        limits=Limits(concurrency=50, per_host=8),
        politeness=Politeness(adaptive=True),
        retry=RetryPolicy(retries=1, backoff_base_s=0.001, backoff_max_s=0.002),
    ) as engine:
        results = await collect(engine, urls)
        stats = engine.statistics()
    assert len(results) == 18
    busy = [r for r in results if "busy.test" in r.url]
    assert len(busy) == 6 and all(r.status == 429 and r.attempts == 2 for r in busy)
    assert all(r.ok and r.status == 200 for r in results if "fine.test" in r.url)
    assert server.log.hosts["busy.test"].requests == 12
    [shown] = stats.hosts
    assert shown.host == "busy.test" and shown.state == "slowed", stats.hosts
    assert shown.cap < 8


# -- dead hosts --------------------------------------------------------------------------------


async def test_dead_host_is_parked_probed_then_given_up(server: Misbehaving) -> None:
    port = free_port()
    dead_after, probes, per_host, count = 3, 2, 4, 50
    dead = [f"http://dead.test:{port}/n{n}" for n in range(count)]
    healthy = [server.url(f"/ok?n={n}", host="alive.test") for n in range(20)]
    states: list[str] = []

    def watch(stats: Statistics) -> None:
        states.extend(host.state for host in stats.hosts if host.host == "dead.test")

    async with make_engine(
        limits=Limits(concurrency=20, per_host=per_host),
        politeness=Politeness(dead_after=dead_after, dead_cooldown_s=0.2, dead_probes=probes),
        retry=NO_RETRY,
    ) as engine:
        began = time.monotonic()
        results = await collect(engine, [*dead, *healthy], watch=watch)
        took = time.monotonic() - began
        stats = engine.statistics()

    by_url = {r.url: r for r in results}
    assert len(by_url) == count + 20
    dead_results = [by_url[url] for url in dead]
    assert all(r.error is not None and r.error.kind is ErrorKind.CONNECT for r in dead_results)
    assert all(r.status is None for r in dead_results)
    sent = [r for r in dead_results if r.attempts > 0]
    refused = [r for r in dead_results if r.attempts == 0]
    assert all(r.attempts == 1 for r in sent)
    # Before parking, up to per_host - 1 more may already be on their way.
    assert dead_after + probes <= len(sent) <= dead_after + (per_host - 1) + probes, len(sent)
    assert len(refused) == count - len(sent)
    for result in refused:
        assert result.error is not None and "given up" in result.error.message, result.error
    # Cool-down 0.2 s, then 0.4 s after the failed first probe.
    assert took >= 0.6 - SLACK_S, took
    assert took < 0.6 + 3.0, took
    # The host went through parked and probing to dead, as statistics showed.
    assert "parked" in states and "dead" in states, Counter(states)
    [shown] = stats.hosts
    assert shown.host == "dead.test" and shown.state == "dead"
    assert shown.failures == len(sent)
    # The healthy host in the same run is untouched.
    assert all(by_url[url].ok and by_url[url].attempts == 1 for url in healthy)
    assert server.log.hosts["alive.test"].requests == 20


async def test_dead_host_with_retries_sends_no_more(server: Misbehaving) -> None:
    # Retries do not add attempts to a dead host: the parked requests wait without spending
    # them, and once it is given up the rest fail unsent.
    port = free_port()
    dead_after, probes, per_host, count = 2, 1, 2, 30
    dead = [f"http://dead.test:{port}/n{n}" for n in range(count)]
    async with make_engine(
        limits=Limits(concurrency=10, per_host=per_host),
        politeness=Politeness(dead_after=dead_after, dead_cooldown_s=0.1, dead_probes=probes),
        retry=RetryPolicy(retries=3, backoff_base_s=0.001, backoff_max_s=0.002),
    ) as engine:
        results = await collect(engine, dead)
    assert len(results) == count
    assert all(r.error is not None and r.error.kind is ErrorKind.CONNECT for r in results)
    sent = sum(r.attempts for r in results)
    assert sent <= dead_after + (per_host - 1) + probes, [r.attempts for r in results]
    # Every request, sent or not, ends refused: a failed one was retried, and its retry
    # found the host given up.
    given_up = [r for r in results if r.error is not None and "given up" in r.error.message]
    assert len(given_up) == count, [r.error for r in results if r not in given_up]


async def test_dead_after_zero_never_parks(server: Misbehaving) -> None:
    port = free_port()
    dead = [f"http://gone.test:{port}/n{n}" for n in range(12)]
    async with make_engine(
        limits=Limits(concurrency=20, per_host=2),
        politeness=Politeness(dead_after=0, dead_cooldown_s=5),
        retry=NO_RETRY,
    ) as engine:
        results = await collect(engine, dead, within_s=4)
        stats = engine.statistics()
    assert len(results) == 12
    assert all(r.attempts == 1 and r.error is not None for r in results)
    assert all(r.error.kind is ErrorKind.CONNECT for r in results if r.error is not None)
    assert all("given up" not in r.error.message for r in results if r.error is not None)
    assert all(host.state not in {"parked", "dead"} for host in stats.hosts)


async def test_a_host_that_comes_back_during_its_cool_down_is_unparked(
    server: Misbehaving,
) -> None:
    # Host "back.test" is refused until a listener appears on its port during the cool-down;
    # the probe then succeeds and the rest is fetched normally.
    port = free_port()
    count = 10
    urls = [f"http://back.test:{port}/ok?n={n}" for n in range(count)]
    runner: web.AppRunner | None = None
    hits: Counter[str] = Counter()

    async def ok(request: WebRequest) -> web.StreamResponse:
        hits[request.path_qs] += 1
        return web.Response(text="back")

    async def revive() -> None:
        nonlocal runner
        await asyncio.sleep(0.1)
        app = web.Application()
        app.router.add_get("/ok", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    reviving = asyncio.create_task(revive())
    try:
        async with make_engine(
            limits=Limits(concurrency=20, per_host=1),
            politeness=Politeness(dead_after=2, dead_cooldown_s=0.3, dead_probes=2),
            retry=NO_RETRY,
        ) as engine:
            results = await collect(engine, urls)
            stats = engine.statistics()
    finally:
        await asyncio.wait([reviving])
        if runner is not None:
            await runner.cleanup()
    failed = [r for r in results if not r.ok]
    assert len(failed) == 2  # the two that parked it
    assert all(r.error is not None and r.error.kind is ErrorKind.CONNECT for r in failed)
    assert sum(1 for r in results if r.ok and r.status == 200) == count - 2
    assert sum(hits.values()) == count - 2
    assert stats.hosts == ()


# -- fairness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("per_host", [4, 20])
async def test_small_hosts_are_not_starved_by_a_big_host_queued_first(
    server: Misbehaving, per_host: int
) -> None:
    # per_host=20 lets the big host alone fill every worker: only taking turns saves the
    # small hosts then.
    big, small_hosts, per_small = 2000, 200, 2
    urls = [server.url(f"/ok?n={n}", host="big.test") for n in range(big)]
    urls += [
        server.url(f"/ok?n={n}", host=f"s{h}.test")
        for h in range(small_hosts)
        for n in range(per_small)
    ]
    results = await fetch_all(urls, within_s=25, limits=Limits(concurrency=20, per_host=per_host))
    assert len(results) == big + small_hosts * per_small
    assert all(r.ok for r in results)
    big_load = server.log.hosts["big.test"]
    assert big_load.requests == big and big_load.peak <= per_host
    half = sorted(big_load.times)[big // 2 - 1]
    for h in range(small_hosts):
        load = server.log.hosts[f"s{h}.test"]
        assert load.requests == per_small
        assert min(load.times) < half, f"s{h}.test first served after half of big.test"


async def test_a_host_with_many_queued_gets_the_same_turns_as_hosts_with_one(
    arrivals: ArrivalServer,
) -> None:
    # The big host alone could fill every worker (per_host = concurrency) and is first in
    # the input; taking turns, each of the 100 small hosts is served before the big host
    # has had its first 20 (the workers' first round) and a few more turns. Serving the big
    # host first would serve all 60 of its requests before any small host.
    big, small_hosts, concurrency = 60, 100, 20
    urls = [arrivals.url(f"/ok?n={n}", host="big.test") for n in range(big)]
    urls += [arrivals.url("/ok", host=f"t{h}.test") for h in range(small_hosts)]
    results = await fetch_all(urls, limits=Limits(concurrency=concurrency, per_host=concurrency))
    assert len(results) == big + small_hosts and all(r.ok for r in results)
    log = await arrivals.read_log()
    big_times = sorted(log.hosts["big.test"].times)
    last_small = max(log.hosts[f"t{h}.test"].times[0] for h in range(small_hosts))
    before = sum(1 for t in big_times if t < last_small)
    assert before <= concurrency + 10, before


# -- statistics --------------------------------------------------------------------------------


async def test_no_politeness_events_no_host_states(server: Misbehaving) -> None:
    seen: list[tuple[HostState, ...]] = []
    urls = [server.url(f"/ok?n={n}", host=f"q{n % 4}.test") for n in range(40)]
    for politeness in (Politeness(), Politeness(per_second=500, burst=4, delay_s=0.001)):
        async with make_engine(politeness=politeness) as engine:
            results = await collect(engine, urls, watch=lambda stats: seen.append(stats.hosts))
            assert all(r.ok for r in results)
            assert engine.statistics().hosts == ()
    assert seen and all(hosts == () for hosts in seen)


async def test_host_states_round_trip_through_to_dict(server: Misbehaving) -> None:
    port = free_port()
    urls = [f"http://dead.test:{port}/n{n}" for n in range(6)]
    urls.append(server.url("/retry-after/rt?status=429&after=5&fail=1", host="p.test"))
    urls.append(server.url("/ok", host="p.test"))
    shown: list[Statistics] = []

    def watch(stats: Statistics) -> None:
        if len(stats.hosts) == 2 and not shown:
            shown.append(stats)

    async with make_engine(
        limits=Limits(concurrency=10, per_host=1),
        politeness=Politeness(dead_after=2, dead_cooldown_s=10),
        retry=NO_RETRY,
    ) as engine:

        async def stop_when_seen() -> None:
            for _ in range(1000):
                if shown:
                    break
                await asyncio.sleep(0.005)
            engine.stop()

        stopper = asyncio.create_task(stop_when_seen())
        await collect(engine, urls, watch=watch)
        await stopper
    [stats] = shown
    states = {host.host: host.state for host in stats.hosts}
    assert states == {"dead.test": "parked", "p.test": "paused"}, stats.hosts
    again = Statistics.from_dict(orjson.loads(orjson.dumps(stats.to_dict())))
    assert again.hosts == stats.hosts
    assert again == stats
    assert Statistics.from_dict(orjson.loads(orjson.dumps(again.to_dict()))) == again
