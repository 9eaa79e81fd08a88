"""The dashboard against a real run: its JSON matches statistics(), /metrics parses with
prometheus_client's own parser, the controls pause, resume and stop, and each refusal of
the guard (token, Host, Origin, a non-loopback address without a token) holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal import ConfigError, Engine, Limits, Network, RetryPolicy, Timeouts
from shoal.reporting.dashboard import Dashboard
from tests import helpers
from tests.conftest import resolver
from tests.helpers import wait_until
from tests.servers import Misbehaving


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    # unsafe: keep cookies from an IP address host, as a browser does
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def make_engine() -> Engine:
    return helpers.make_engine(
        limits=Limits(concurrency=4, per_host=4), retry=RetryPolicy(), timeouts=Timeouts()
    )


async def test_stats_and_metrics_match_the_run(
    server: Misbehaving, client: aiohttp.ClientSession
) -> None:
    engine = make_engine()
    urls = [server.url(f"/ok?n={n}") for n in range(30)] + [server.url("/status/503")]
    async with engine, Dashboard(engine) as dashboard:
        stats = await engine.run(urls)
        base = f"http://127.0.0.1:{dashboard.port}"
        async with client.get(base + "/api/stats") as response:
            data = await response.json()
        async with client.get(base + "/metrics") as response:
            text = await response.text()
        async with client.get(base + "/") as response:
            page = await response.text()
    assert data["done"] == stats.done == 31 and data["ok"] == stats.ok
    assert data["by_outcome"] == {"ok/2xx": 30, "ok/5xx": 1}
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = {
        (s.labels["outcome"], s.labels["status_class"]): s.value
        for s in families["shoal_requests"].samples
    }
    assert requests == {("ok", "2xx"): 30.0, ("ok", "5xx"): 1.0}
    durations = families["shoal_request_duration_seconds"].samples
    count = next(s.value for s in durations if s.name.endswith("_count"))
    assert count == 31
    assert families["shoal_paused"].samples[0].value == 0
    assert "/static/uPlot.iife.min.js" in page and "http" not in page.split("<body>")[1]


async def test_the_controls_pause_resume_and_stop(
    server: Misbehaving, client: aiohttp.ClientSession
) -> None:
    engine = make_engine()
    async with engine, Dashboard(engine) as dashboard:
        base = f"http://127.0.0.1:{dashboard.port}"
        async with client.post(base + "/api/pause") as response:
            assert (await response.json())["paused"] is True
        # Slow requests, four at a time: the run is far from its end when Stop comes.
        urls = [server.url(f"/delay?s=0.5&n={n}") for n in range(20)]
        run = asyncio.create_task(engine.run(urls))
        await asyncio.sleep(0.3)
        assert server.log.total == 0  # paused: nothing reached the server
        async with client.post(base + "/api/resume") as response:
            assert (await response.json())["paused"] is False
        await wait_until(lambda: server.log.total > 0, 5, "requests after resume")
        async with client.post(base + "/api/stop") as response:
            assert response.status == 200
        stats = await asyncio.wait_for(run, 10)
    # Stop took effect: the run ended as stopped, with what was in flight done and nothing
    # started after it.
    assert stats.interrupted and stats.finished
    assert stats.done == server.log.total < len(urls), (stats.done, server.log.total)


async def test_a_get_changes_nothing(client: aiohttp.ClientSession) -> None:
    engine = make_engine()
    async with engine, Dashboard(engine) as dashboard:
        url = f"http://127.0.0.1:{dashboard.port}/api/pause"
        async with client.get(url) as response:
            assert response.status == 405
    assert not engine.paused


async def test_the_guard_refuses_other_hosts_and_other_origins(
    client: aiohttp.ClientSession,
) -> None:
    engine = make_engine()
    async with engine, Dashboard(engine) as dashboard:
        base = f"http://127.0.0.1:{dashboard.port}"
        rebound = {"Host": f"attacker.example:{dashboard.port}"}
        async with client.get(base + "/api/stats", headers=rebound) as response:
            assert response.status == 403
        forged = {"Origin": "http://attacker.example"}
        async with client.post(base + "/api/stop", headers=forged) as response:
            assert response.status == 403
        same = {"Origin": base}
        async with client.post(base + "/api/pause", headers=same) as response:
            assert response.status == 200
    assert engine.paused and not engine.statistics().interrupted


async def test_a_token_guards_every_route(client: aiohttp.ClientSession) -> None:
    engine = make_engine()
    async with engine, Dashboard(engine, token="s3cret") as dashboard:
        base = f"http://127.0.0.1:{dashboard.port}"
        for path in ("/", "/api/stats", "/metrics"):
            async with client.get(base + path) as response:
                assert response.status == 401, path
        async with client.post(base + "/api/pause") as response:
            assert response.status == 401
        bearer = {"Authorization": "Bearer s3cret"}
        async with client.get(base + "/api/stats", headers=bearer) as response:
            assert response.status == 200
        async with client.get(base + "/?token=wrong") as response:
            assert response.status == 401
        async with client.get(dashboard.url) as response:  # sets the cookie, then the page
            assert response.status == 200 and "shoal" in await response.text()
        async with client.get(base + "/api/stats") as response:
            assert response.status == 200  # the cookie now
    assert not engine.paused


def test_another_address_needs_a_token() -> None:
    engine = make_engine()
    with pytest.raises(ConfigError) as refused:
        Dashboard(engine, host="0.0.0.0")
    assert refused.value.option == "dashboard_token"
    Dashboard(engine, host="0.0.0.0", token="t")  # with one, it is allowed


async def test_a_map_shows_its_calls_and_groups(client: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def work(n: int) -> int:
        if n >= 20:
            await release.wait()  # held in flight while the dashboard is read
        if n % 5 == 0:
            raise ValueError("five")
        return n

    engine = Engine(limits=Limits(concurrency=8, per_host=2))
    async with engine, Dashboard(engine) as dashboard:
        base = f"http://127.0.0.1:{dashboard.port}"
        async with engine.map(work, range(24), group=lambda n: f"g{n % 2}") as outcomes:
            seen = 0
            async for _ in outcomes:
                seen += 1
                if seen == 20:
                    async with client.get(base + "/api/stats") as response:
                        stats = await response.json()
                    async with client.get(base + "/api/hosts") as response:
                        hosts = await response.json()
                    release.set()
        async with client.get(base + "/metrics") as response:
            text = await response.text()
    assert seen == 24
    assert (stats["done"], stats["ok"], stats["failed"]) == (20, 16, 4)
    assert stats["by_error"] == {"task": 4} and stats["in_flight"] == 4
    busy = {host["host"]: host["in_flight"] for host in hosts["busiest"]}
    assert busy == {"g0": 2, "g1": 2}  # each group at its cap
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = {
        (s.labels["outcome"], s.labels["status_class"]): s.value
        for s in families["shoal_requests"].samples
    }
    assert requests == {("ok", "none"): 19.0, ("failed", "none"): 5.0}


def test_the_history_keeps_rates_between_readings_in_a_bounded_ring() -> None:
    from dataclasses import replace

    from shoal.reporting.dashboard import History
    from shoal.reporting.statistics import Recorder

    history = History(size=3)
    base = Recorder().snapshot()
    for second in range(6):
        history.sample(replace(base, done=10 * second**2, bytes=1024 * second), at=100.0 + second)
    # Between readings: (10 s² - 10 (s-1)²) per second; only the newest three are kept.
    assert history.points() == [(103.0, 50.0, 1024.0), (104.0, 70.0, 1024.0), (105.0, 90.0, 1024.0)]
    assert history.points(1) == [(105.0, 90.0, 1024.0)]


async def test_the_history_is_served_from_the_moment_the_dashboard_opens(
    server: Misbehaving, client: aiohttp.ClientSession
) -> None:
    urls = [server.url(f"/delay?s=0.05&n={n}", host=f"h{n % 4}.test") for n in range(400)]
    engine = Engine(limits=Limits(concurrency=4, per_host=4), network=Network(resolver=resolver()))
    async with engine, Dashboard(engine) as dashboard:
        run = asyncio.create_task(engine.run(urls))
        try:
            points: list[list[float]] = []
            deadline = asyncio.get_running_loop().time() + 10
            while len(points) < 3:
                assert asyncio.get_running_loop().time() < deadline, points
                await asyncio.sleep(0.2)
                async with client.get(dashboard.url + "api/history") as response:
                    points = (await response.json())["points"]
        finally:
            engine.stop()
            await asyncio.wait_for(run, 10)
    times = [point[0] for point in points]
    assert times == sorted(times) and all(rate >= 0 for _, rate, _ in points)
    assert any(rate > 0 for _, rate, _ in points)  # requests were finishing
