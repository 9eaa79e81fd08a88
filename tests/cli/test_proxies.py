"""The proxy environment and ``--proxy``, end to end through a real forwarding proxy.

The proxy is a plain HTTP one written with aiohttp.web on 127.0.0.1: it takes the
absolute URL of each request line, notes it, and forwards the request to 127.0.0.1 at
that URL's port (the ``.test`` names are the tests' own), answering with what came back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.command import RESOLVE, Finished, environment, lines, shoal
from tests.servers import Misbehaving, serve
from tests.tls_server import ConnectProxy, TLSServer, make_certificates

QUIET = ("--progress", "off", "--retries", "0")
#: Nothing listens there: a request sent through it fails to connect.
DEAD_PROXY = "http://127.0.0.1:1"


@dataclass
class Forwarding:
    port: int
    #: The absolute URLs it was asked for, in order.
    asked: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def proxy() -> AsyncIterator[Forwarding]:
    forwarding = Forwarding(0)
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        target = request.url  # the absolute URL of the request line
        forwarding.asked.append(str(target))
        direct = target.with_host("127.0.0.1")
        async with session.request(
            request.method, direct, headers={"Host": request.host}, allow_redirects=False
        ) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner, forwarding.port = await serve(app)
    try:
        yield forwarding
    finally:
        await runner.cleanup()
        await session.close()


async def fetch(*urls: str, options: tuple[str, ...] = (), **env: str) -> Finished:
    return await shoal(
        "fetch", *RESOLVE, *QUIET, *options, stdin=lines(*urls), env=environment(**env)
    )


def by_url(done: Finished) -> dict[str, dict[str, object]]:
    return {str(record["url"]): record for record in done.records()}


async def test_http_proxy_from_the_environment_is_used(
    server: Misbehaving, proxy: Forwarding
) -> None:
    url = server.url("/ok", host="a.test")
    done = await fetch(url, http_proxy=proxy.url)
    assert done.code == 0, done.stderr
    [record] = done.records()
    assert record["status"] == 200
    assert proxy.asked == [url]
    assert record["address"] == f"127.0.0.1:{proxy.port}"  # connected to the proxy


async def test_upper_case_and_a_proxy_without_a_scheme(
    server: Misbehaving, proxy: Forwarding
) -> None:
    url = server.url("/ok", host="a.test")
    done = await fetch(url, HTTP_PROXY=f"127.0.0.1:{proxy.port}")
    assert done.code == 0, done.stderr
    assert proxy.asked == [url]


async def test_a_dead_environment_proxy_fails_the_request(server: Misbehaving) -> None:
    done = await fetch(server.url("/ok"), http_proxy=DEAD_PROXY)
    assert done.code == 1, done.stderr
    [record] = done.records()
    assert record["error"]["kind"] == "connect"
    assert server.log.total == 0


async def test_no_proxy_env_ignores_the_environment(server: Misbehaving) -> None:
    done = await fetch(server.url("/ok"), options=("--no-proxy-env",), http_proxy=DEAD_PROXY)
    assert done.code == 0, done.stderr
    assert server.log.total == 1


async def test_an_empty_proxy_goes_direct_whatever_the_environment(server: Misbehaving) -> None:
    done = await fetch(server.url("/ok"), options=("--proxy", ""), http_proxy=DEAD_PROXY)
    assert done.code == 0, done.stderr
    assert server.log.total == 1


async def test_no_proxy_sends_its_hosts_direct(server: Misbehaving, proxy: Forwarding) -> None:
    direct = server.url("/ok", host="inside.test")
    sub = server.url("/ok?n=2", host="www.inside.test")
    proxied = server.url("/ok", host="outside.test")
    done = await fetch(
        direct, sub, proxied, http_proxy=proxy.url, no_proxy="localhost,.inside.test"
    )
    assert done.code == 0, done.stderr
    assert proxy.asked == [proxied]
    records = by_url(done)
    assert records[direct]["address"] == records[sub]["address"] == f"127.0.0.1:{server.port}"
    assert records[proxied]["address"] == f"127.0.0.1:{proxy.port}"


async def test_the_proxy_option_wins_and_may_lack_a_scheme(
    server: Misbehaving, proxy: Forwarding
) -> None:
    url = server.url("/ok", host="a.test")
    done = await fetch(
        url,
        options=("--proxy", f"127.0.0.1:{proxy.port}"),
        http_proxy=DEAD_PROXY,
        no_proxy="a.test",  # the environment's, ignored with --proxy
    )
    assert done.code == 0, done.stderr
    assert proxy.asked == [url]


async def test_an_https_proxy_in_the_environment_does_not_serve_http(
    server: Misbehaving,
) -> None:
    done = await fetch(server.url("/ok"), https_proxy=DEAD_PROXY)
    assert done.code == 0, done.stderr
    assert server.log.total == 1


async def test_an_unusable_environment_proxy_is_a_usage_error(server: Misbehaving) -> None:
    done = await fetch(server.url("/ok"), https_proxy="socks5://127.0.0.1:1080")
    assert done.code == 2, done.stderr
    assert "https_proxy" in done.stderr and "--no-proxy-env" in done.stderr
    assert server.log.total == 0


async def test_https_proxy_from_the_environment_tunnels_https(tmp_path: Path) -> None:
    certificates = make_certificates()
    bundle = certificates.write_bundle(tmp_path / "ca.pem")
    tls, tunnel = TLSServer(certificates), ConnectProxy()
    await tls.start()
    await tunnel.start()
    try:
        done = await fetch(
            tls.url("/ok"),
            options=("--ca-bundle", bundle),
            https_proxy=f"http://127.0.0.1:{tunnel.port}",
            http_proxy=DEAD_PROXY,  # for http:// URLs only
        )
    finally:
        await tunnel.stop()
        await tls.stop()
    assert done.code == 0, done.stderr
    [record] = done.records()
    assert record["status"] == 200
    assert tunnel.tunnels == [f"good.test:{tls.port}"]
