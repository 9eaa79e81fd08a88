"""robots.txt, opt-in: fetched once per site, its rules applied, RFC 9309's answers kept."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

import shoal
from shoal import ErrorKind, Limits, Politeness, RetryPolicy, Timeouts
from tests import helpers
from tests.command import RESOLVE
from tests.command import shoal as run_shoal
from tests.conftest import resolver
from tests.servers import serve

ROBOTS = {
    "rules.test": (
        200,
        "User-agent: *\nDisallow: /private\n\nUser-agent: shoal\nDisallow: /no-shoal\n",
    ),
    "star.test": (200, "User-agent: *\nDisallow: /private\n"),
    "missing.test": (404, "not here"),
    "forbidden.test": (403, "no"),
    "broken.test": (503, "try later"),
    "slow.test": (200, "User-agent: *\nCrawl-delay: 0.2\n"),
}


class RobotsServer:
    """Serves a robots.txt per Host header and 200 for everything else (after ``s``
    seconds, 0 unless given); counts all, and the most pages of a host in flight at once."""

    def __init__(self) -> None:
        self.hits: Counter[tuple[str, str]] = Counter()
        self.times: dict[str, list[float]] = {}
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        host = (request.host or "").rsplit(":", 1)[0]
        self.hits[(host, request.path)] += 1
        if request.path == "/robots.txt":
            status, text = ROBOTS.get(host, (404, ""))
            return web.Response(status=status, text=text)
        self.times.setdefault(host, []).append(time.monotonic())
        self.in_flight[host] += 1
        self.peak[host] = max(self.peak[host], self.in_flight[host])
        try:
            await asyncio.sleep(float(request.query.get("s", 0)))
        finally:
            self.in_flight[host] -= 1
        return web.Response(text="page")


@pytest.fixture
async def site() -> AsyncIterator[RobotsServer]:
    server = RobotsServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def fetch_all(
    urls: list[str], *, respect_robots: bool = True, robots_crawl_delay: bool = False
) -> dict[str, shoal.Result]:
    engine = helpers.make_engine(
        limits=Limits(concurrency=10, per_host=5),
        retry=RetryPolicy(retries=0),
        timeouts=Timeouts(total_s=5, connect_s=2, read_s=2),
        politeness=Politeness(respect_robots=respect_robots, robots_crawl_delay=robots_crawl_delay),
    )
    async with engine, engine.stream(urls) as results:
        return {result.url: result async for result in results}


async def test_disallowed_paths_fail_and_are_never_sent(site: RobotsServer) -> None:
    urls = [site.url("star.test", f"/page/{n}") for n in range(10)]
    urls += [site.url("star.test", f"/private/{n}") for n in range(10)]
    results = await fetch_all(urls)
    for url, result in results.items():
        if "/private/" in url:
            assert result.error is not None and result.error.kind is ErrorKind.ROBOTS
            assert "disallowed" in result.error.message
            assert result.attempts == 0
        else:
            assert result.ok, result
    assert not any(path.startswith("/private") for _, path in site.hits)
    # Twenty requests, five at once, one robots.txt.
    assert site.hits[("star.test", "/robots.txt")] == 1


async def test_the_group_for_our_user_agent_applies(site: RobotsServer) -> None:
    urls = [site.url("rules.test", "/no-shoal"), site.url("rules.test", "/private")]
    results = await fetch_all(urls)
    refused = results[urls[0]].error
    assert refused is not None and refused.kind is ErrorKind.ROBOTS
    # The 'shoal' group replaces '*' for shoal: /private is allowed to us.
    assert results[urls[1]].ok


@pytest.mark.parametrize("host", ["missing.test", "forbidden.test"])
async def test_a_4xx_robots_txt_allows_everything(site: RobotsServer, host: str) -> None:
    urls = [site.url(host, f"/private/{n}") for n in range(3)]
    results = await fetch_all(urls)
    assert all(result.ok for result in results.values())
    assert site.hits[(host, "/robots.txt")] == 1


async def test_an_unreachable_robots_txt_disallows_for_now(site: RobotsServer) -> None:
    urls = [site.url("broken.test", f"/page/{n}") for n in range(3)]
    results = await fetch_all(urls)
    for result in results.values():
        assert result.error is not None and result.error.kind is ErrorKind.ROBOTS
        assert "HTTP 503" in result.error.message and "RFC 9309" in result.error.message
        assert result.attempts == 1
    assert not any(path.startswith("/page") for _, path in site.hits)


async def test_an_unreachable_robots_txt_is_retried_under_the_policy(site: RobotsServer) -> None:
    engine = shoal.Engine(
        network=shoal.Network(resolver=resolver()),
        retry=RetryPolicy(retries=2, backoff_base_s=0.001),
        politeness=Politeness(respect_robots=True),
    )
    url = site.url("broken.test", "/page")
    async with engine, engine.stream([url]) as results:
        (result,) = [result async for result in results]
    assert result.error is not None and result.error.kind is ErrorKind.ROBOTS
    assert result.attempts == 3
    # The verdict is kept a while (30 s), so the retries did not ask again.
    assert site.hits[("broken.test", "/robots.txt")] == 1


async def test_without_the_option_robots_txt_is_not_read(site: RobotsServer) -> None:
    results = await fetch_all([site.url("star.test", "/private/1")], respect_robots=False)
    assert all(result.ok for result in results.values())
    assert site.hits[("star.test", "/robots.txt")] == 0


async def test_crawl_delay_is_honoured_when_asked(site: RobotsServer) -> None:
    urls = [site.url("slow.test", f"/page/{n}") for n in range(4)]
    results = await fetch_all(urls, robots_crawl_delay=True)
    assert all(result.ok for result in results.values())
    times = site.times["slow.test"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3 and all(gap >= 0.19 for gap in gaps), gaps


async def test_crawl_delay_is_ignored_unless_asked(site: RobotsServer) -> None:
    # Pages answered after 0.5 s: all four were in flight at once, which a crawl delay of
    # 0.2 s between starts would not allow (the first is answered before the fourth starts).
    urls = [site.url("slow.test", f"/page/{n}?s=0.5") for n in range(4)]
    results = await fetch_all(urls)
    assert all(result.ok for result in results.values())
    assert site.peak["slow.test"] == 4, site.times["slow.test"]


async def test_cli_respect_robots(site: RobotsServer, tmp_path: Path) -> None:
    urls = [site.url("star.test", "/page"), site.url("star.test", "/private/x")]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    output = tmp_path / "out.jsonl"
    args = ("fetch", str(tmp_path / "urls.txt"), "-o", str(output), *RESOLVE, "--progress", "off")
    done = await run_shoal(*args, "--respect-robots")
    assert done.code == 1, done.stderr  # one request failed: the disallowed one
    records = {
        record["url"]: record for record in map(orjson.loads, output.read_bytes().splitlines())
    }
    assert records[urls[0]]["status"] == 200
    assert records[urls[1]]["error"]["kind"] == "robots"
    assert "robots" in done.stderr
