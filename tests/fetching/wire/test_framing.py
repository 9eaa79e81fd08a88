"""The wire transport's framing against a server writing exact bytes: each way a body's
end is told, interim responses skipped, bodiless statuses, and when a connection is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shoal import ErrorKind
from shoal.fetching.session import SessionSettings
from shoal.fetching.transport import Outgoing, TransportFailure
from shoal.fetching.wire import WireTransport
from tests.fetching.wire.raw import RawServer, Reply, reply


@pytest.fixture
async def transport() -> AsyncIterator[WireTransport]:
    wire = WireTransport(SessionSettings(connections=8))
    try:
        yield wire
    finally:
        await wire.close()


async def fetch(
    transport: WireTransport, url: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with transport.exchange(Outgoing(method=method, url=url, body=body)) as response:
        data = b"".join([chunk async for chunk in response.chunks()])
        return response.status, dict(response.headers), data


CASES = {
    "content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n",
        b"hello world",
    ),
    "interim": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"ok",
    ),
    "204": (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", b""),
    "304": (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", b""),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_framing_gives_the_body_and_keeps_the_connection(
    transport: WireTransport, case: str
) -> None:
    data, body = CASES[case]
    async with RawServer(lambda c, i, r: reply(data)) as server:
        for _ in range(3):
            status, headers, got = await fetch(transport, server.url())
            assert got == body
        assert server.connections == 1
    if case == "interim":
        assert status == 200 and "Link" not in headers


async def test_a_body_read_until_close(transport: WireTransport) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    answer = Reply([data, b"all of ", b"it"], close=True)
    async with RawServer(lambda c, i, r: answer) as server:
        assert (await fetch(transport, server.url()))[2] == b"all of it"
        assert (await fetch(transport, server.url()))[2] == b"all of it"
        assert server.connections == 2


async def test_head_has_no_body_and_keeps_the_connection(transport: WireTransport) -> None:
    def answer(connection: int, index: int, request: bytes) -> Reply:
        if request.startswith(b"HEAD"):
            return reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        return reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget")

    async with RawServer(answer) as server:
        status, headers, body = await fetch(transport, server.url(), "HEAD")
        assert (status, headers["Content-Length"], body) == (200, "1000", b"")
        assert (await fetch(transport, server.url()))[2] == b"get"
        assert (await fetch(transport, server.url(), "HEAD"))[2] == b""
        assert server.connections == 1


async def test_connection_close_is_not_reused(transport: WireTransport) -> None:
    data = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with RawServer(lambda c, i, r: reply(data)) as server:
        for _ in range(3):
            assert (await fetch(transport, server.url()))[2] == b"ok"
        assert server.connections == 3


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n0123456789",
    ],
    ids=["content-length", "chunked"],
)
async def test_a_body_cut_short_fails_and_its_connection_is_not_reused(
    transport: WireTransport, head: bytes
) -> None:
    def answer(connection: int, index: int, request: bytes) -> Reply:
        if connection == 0:
            return Reply([head], close=True)
        return reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with RawServer(answer) as server:
        with pytest.raises(TransportFailure) as raised:
            await fetch(transport, server.url())
        assert raised.value.error.kind is ErrorKind.RESET
        assert "Response payload is not completed" in raised.value.error.message
        assert (await fetch(transport, server.url()))[2] == b"ok"
        assert server.connections == 2


async def test_a_body_left_unread_is_not_reused(transport: WireTransport) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"
    async with RawServer(lambda c, i, r: Reply([data, b"56789"])) as server:
        async with transport.exchange(Outgoing(method="GET", url=server.url())) as response:
            assert response.status == 200
        assert (await fetch(transport, server.url()))[2] == b"0123456789"
        assert server.connections == 2
        assert transport.pool.idle == 1


async def test_a_malformed_response_is_a_protocol_error(transport: WireTransport) -> None:
    async with RawServer(lambda c, i, r: reply(b"HTTP/1.1 WHAT NOPE\r\n\r\n")) as server:
        with pytest.raises(TransportFailure) as raised:
            await fetch(transport, server.url())
    assert raised.value.error.kind is ErrorKind.PROTOCOL


async def test_the_request_is_written_as_told(transport: WireTransport) -> None:
    empty = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    async with RawServer(lambda c, i, r: empty) as server:
        await fetch(transport, server.url("/a/b?c=d"), "POST", b"payload")
    (request,) = server.requests
    head, body = request.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /a/b?c=d HTTP/1.1"
    assert lines[1] == f"Host: 127.0.0.1:{server.port}".encode()
    assert b"Content-Length: 7" in lines and body == b"payload"
