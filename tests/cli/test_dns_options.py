"""The DNS options of ``shoal fetch`` from the command line, against the tests' DNS server
(``tests/dns_server.py``): each test counts the queries that server answered, so an option
dropped between the command line and the resolver fails here.

aiohttp's connector keeps a name for 10 s in front of shoal's resolver, by name and port:
so the tests that count lookups of one name send each request to a port of its own.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from tests.command import lines, shoal
from tests.dns_server import TestDNSServer
from tests.servers import Misbehaving, serve

QUIET = ("--progress", "off", "-q")


@pytest.fixture
def dns() -> Iterator[TestDNSServer]:
    with TestDNSServer() as server:
        yield server


@pytest.fixture
async def ports() -> AsyncIterator[list[int]]:
    """Three servers answering 200 ``ok`` to every path, one port each."""

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    runners = [await serve(app) for _ in range(3)]
    try:
        yield [port for _, port in runners]
    finally:
        for runner, _ in runners:
            await runner.cleanup()


async def lookups_of(dns: TestDNSServer, ports: list[int], name: str, *options: str) -> int:
    """Fetch ``name`` at each of ``ports``, one after another: how many times shoal's
    resolver asked for it, as the summary says."""
    urls = [f"http://{name}:{port}/" for port in ports]
    done = await shoal(
        "fetch", "--dns-server", dns.address, "--progress", "off", "--per-host", "1",
        *options, stdin=lines(*urls),
    )  # fmt: skip
    assert done.code == 0, done.stderr
    assert [record["status"] for record in done.records()] == [200] * len(ports)
    [said] = re.findall(r" dns +(\d+) lookups? ", done.stderr)
    return int(said)


async def test_dns_min_ttl_0_asks_again_for_a_name_of_ttl_0(
    dns: TestDNSServer, ports: list[int]
) -> None:
    # Ignored, the 60 s minimum would keep the answer.
    assert await lookups_of(dns, ports, "ttl0-min.test", "--dns-min-ttl", "0") == 3
    assert dns.zone.queries[("ttl0-min.test", "A")] == 3  # (c-ares may keep the empty AAAA)


async def test_by_default_an_answer_of_ttl_0_is_kept_60_s(
    dns: TestDNSServer, ports: list[int]
) -> None:
    assert await lookups_of(dns, ports, "ttl0-kept.test") == 1
    assert dns.zone.queries[("ttl0-kept.test", "A")] == 1


async def test_dns_max_ttl_shortens_a_long_ttl(dns: TestDNSServer, ports: list[int]) -> None:
    # 300 s clamped to 0. Ignored, the 3600 s maximum would keep the answer. (c-ares keeps
    # it too, within its TTL: the server need not be asked each time.)
    options = ("--dns-min-ttl", "0", "--dns-max-ttl", "0")
    assert await lookups_of(dns, ports, "long-max.test", *options) == 3
    assert await lookups_of(dns, ports, "long-kept.test", "--dns-min-ttl", "0") == 1


async def test_dns_concurrency_caps_the_lookups_in_flight(
    dns: TestDNSServer, server: Misbehaving
) -> None:
    # Six names answered after 0.3 s, fetched together; one lookup at a time is at most two
    # queries at once (its A and AAAA). Ignored, the cap of 64 would let all six go at once.
    urls = [server.url("/ok", host=f"slow-c{n}.test") for n in range(6)]
    done = await shoal(
        "fetch", "--dns-server", dns.address, *QUIET, "--dns-concurrency", "1",
        stdin=lines(*urls),
    )  # fmt: skip
    assert done.code == 0, done.stderr
    assert all(dns.zone.count(f"slow-c{n}.test") == 2 for n in range(6))
    assert 1 <= dns.zone.peak <= 2
