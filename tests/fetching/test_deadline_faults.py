"""The watchdog's deadlines where connections are shared or come late: a redirect's body
that stalls (archived, so shoal reads it), a proxy that stalls its CONNECT, and an idle
connection of an earlier hop closing while the next hop waits. Each case once left an
attempt without a deadline; a raw server on 127.0.0.1 plays each misbehaviour exactly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shoal
from shoal import ErrorKind, RetryPolicy, Timeouts
from tests.conftest import resolver
from tests.helpers import engine_options

#: Every run here is cut off after this long, so a missed deadline fails instead of hanging.
_LIMIT_S = 8.0


class RawServer:
    """HTTP/1.1 by hand, so that a response can stop exactly where a test wants it to.

    ``/stalled-redirect`` sends a 302 whose body stops halfway; ``/hang`` never answers;
    ``/redirect-elsewhere?to=HOST:PORT`` sends a keep-alive 302 to another host and closes
    that connection 0.5 s later; a ``CONNECT`` gets no answer (``connect="silent"``) or a
    200 and then silence (``connect="200-then-silent"``).
    """

    def __init__(self, connect: str = "silent") -> None:
        self.connect = connect
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                if method == "CONNECT":
                    if self.connect == "200-then-silent":
                        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await asyncio.sleep(3600)
                    return
                path = target.split("?")[0]
                if path == "/stalled-redirect":
                    writer.write(
                        b"HTTP/1.1 302 Found\r\nLocation: /hang\r\n"
                        b"Content-Length: 100\r\n\r\n0123456789"
                    )
                    await asyncio.sleep(3600)
                    return
                if path == "/redirect-elsewhere":
                    to = target.split("to=")[1]
                    writer.write(
                        f"HTTP/1.1 302 Found\r\nLocation: http://{to}/hang\r\n"
                        "Content-Length: 0\r\n\r\n".encode()
                    )
                    await writer.drain()
                    await asyncio.sleep(0.5)
                    writer.close()
                    return
                await asyncio.sleep(3600)  # /hang and anything else
                return


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    server = RawServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _fetch(url: str, timeouts: Timeouts, **options: object) -> tuple[shoal.Result, float]:
    options = {"resolver": resolver(), "retry": RetryPolicy(retries=0), **options}
    engine = shoal.Engine(timeouts=timeouts, **engine_options(options))
    started = time.monotonic()

    async def run() -> list[shoal.Result]:
        async with engine.stream([url]) as results:
            return [result async for result in results]

    async with engine:
        found = await asyncio.wait_for(run(), _LIMIT_S)
    assert len(found) == 1
    return found[0], time.monotonic() - started


async def test_an_archived_redirect_that_stalls_keeps_the_attempts_deadlines(
    raw: RawServer, tmp_path: Path
) -> None:
    # The archive reads a redirect's body to its end; the stall ends that read (between
    # reads), the redirect is followed, and the next hop still has its deadlines.
    result, took = await _fetch(
        f"http://a.test:{raw.port}/stalled-redirect",
        Timeouts(total_s=2, connect_s=1, read_s=0.3),
        outputs=shoal.Outputs(warc=str(tmp_path / "crawl")),
    )
    assert result.error is not None and result.error.kind is ErrorKind.TIMEOUT
    assert took < 3


@pytest.mark.parametrize("answer", ["silent", "200-then-silent"])
async def test_a_proxy_that_stalls_the_tunnel_is_a_connect_timeout(
    raw: RawServer, answer: str
) -> None:
    raw.connect = answer
    result, took = await _fetch(
        "https://a.test:1/ok",
        Timeouts(total_s=3, connect_s=0.3, read_s=0.5),
        network=shoal.Network(proxy=f"http://p.test:{raw.port}"),
    )
    assert result.error is not None and result.error.kind is ErrorKind.TIMEOUT
    assert result.error.message.startswith("Connection timeout to host")
    assert took < 1.5


async def test_an_earlier_hops_idle_connection_closing_does_not_disarm_the_next_hop(
    raw: RawServer,
) -> None:
    result, _ = await _fetch(
        f"http://a.test:{raw.port}/redirect-elsewhere?to=b.test:{raw.port}",
        Timeouts(total_s=4, connect_s=1, read_s=1),
    )
    assert result.error is not None
    assert result.error.message == "Timeout on reading data from socket"
