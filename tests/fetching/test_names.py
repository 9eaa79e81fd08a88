"""Host names and addresses as users write them, through the real DNS server: international
names (also in a redirect), upper case, default ports, IPv6 literals and IPv6-only names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import pytest
from aiohttp import web

from shoal import DNSSettings, Engine, Network, Outputs, Result, Timeouts
from tests.dns_server import TestDNSServer
from tests.servers import Misbehaving


@pytest.fixture
def dns() -> Iterator[TestDNSServer]:
    with TestDNSServer() as server:
        yield server


@pytest.fixture
async def ipv6_server() -> AsyncIterator[int]:
    """A server on ::1 that answers with the Host header it was sent."""

    async def host(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("Host", ""))

    app = web.Application()
    app.router.add_get("/host", host)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "::1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def fetch(dns: TestDNSServer, urls: list[str]) -> list[Result]:
    engine = Engine(
        network=Network(dns=DNSSettings(servers=(dns.address,), timeout_s=2.0, tries=1)),
        timeouts=Timeouts(total_s=10, connect_s=5, read_s=5),
        outputs=Outputs(keep_body=True),
    )
    async with engine, engine.stream(urls) as results:
        return [result async for result in results]


async def test_an_international_name_is_looked_up_as_punycode(
    dns: TestDNSServer, server: Misbehaving
) -> None:
    [result] = await fetch(dns, [f"http://bücher.test:{server.port}/ok"])
    assert result.ok, result.error
    assert result.url == f"http://bücher.test:{server.port}/ok"  # as the user wrote it
    assert result.final_url == f"http://xn--bcher-kva.test:{server.port}/ok"
    assert dns.zone.count("xn--bcher-kva.test") >= 2  # A and AAAA, for the encoded name
    assert "xn--bcher-kva.test" in server.log.hosts


async def test_a_redirect_to_an_international_name_is_followed(
    dns: TestDNSServer, server: Misbehaving
) -> None:
    target = quote(f"http://münchen.test:{server.port}/ok", safe="")
    [result] = await fetch(dns, [server.url(f"/redirect-to?url={target}", host="start.test")])
    assert result.ok, result.error
    assert result.redirects == 1
    assert result.final_url == f"http://xn--mnchen-3ya.test:{server.port}/ok"
    assert dns.zone.count("xn--mnchen-3ya.test") >= 2


async def test_names_in_upper_case_and_spelled_alike_are_one_request(
    dns: TestDNSServer, server: Misbehaving
) -> None:
    urls = [
        f"http://XN--BCHER-KVA.TEST:{server.port}/ok",
        f"HTTP://bücher.test:{server.port}/ok",
        f"http://Bücher.Test:{server.port}/ok",
    ]
    results = await fetch(dns, urls)
    assert len(results) == 1  # the same request, written three ways: fetched once
    assert results[0].ok
    assert server.log.total == 1


async def test_default_ports_are_the_same_url() -> None:
    from shoal.sources.items import entry_for

    assert entry_for("http://a.test:80/x", 1).key == entry_for("http://a.test/x", 2).key
    assert entry_for("https://a.test:443/x", 1).key == entry_for("https://a.test/x", 2).key
    assert entry_for("http://a.test:8080/x", 1).key != entry_for("http://a.test/x", 2).key


async def test_an_ipv6_literal_is_fetched_without_a_lookup(
    dns: TestDNSServer, ipv6_server: int
) -> None:
    [result] = await fetch(dns, [f"http://[::1]:{ipv6_server}/host"])
    assert result.ok, result.error
    assert result.body == f"[::1]:{ipv6_server}".encode()
    assert dns.zone.total() == 0


async def test_an_ipv6_only_name_connects_over_ipv6(dns: TestDNSServer, ipv6_server: int) -> None:
    [result] = await fetch(dns, [f"http://v6-site.test:{ipv6_server}/host"])
    assert result.ok, result.error
    assert result.body == f"v6-site.test:{ipv6_server}".encode()
