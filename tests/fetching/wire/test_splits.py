"""However the server's bytes are split on the wire, the wire transport reads the same
response (status, headers, body), keeps the connection, and captures exactly the bytes sent
for the archive (the interim response left out, as the aiohttp transport does)."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.capture import Capture
from shoal.fetching.session import SessionSettings
from shoal.fetching.transport import Outgoing
from shoal.fetching.wire import WireTransport
from tests.fetching.wire.raw import RawServer, Reply

INTERIM = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
FINAL = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Two: 1\r\nX-Two: 2\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    b"7;ext=1\r\nhello, \r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n"
)
RESPONSE = INTERIM + FINAL
BODY = b"hello, abcdefghijklmnopqrstuvwxyz"


def pieces(cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(set(cuts)), len(RESPONSE)]
    return [RESPONSE[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.integers(min_value=1, max_value=len(RESPONSE) - 1), max_size=12),
    st.lists(st.integers(min_value=1, max_value=len(RESPONSE) - 1), max_size=12),
)
async def test_any_split_reads_the_same_response(first: list[int], second: list[int]) -> None:
    splits = [pieces(first), pieces(second)]
    transport = WireTransport(SessionSettings(connections=2))
    try:
        async with RawServer(lambda c, i, r: Reply(splits[i])) as server:
            for index in range(2):
                capture = Capture(redirect_cap=1000)
                request = Outgoing(method="GET", url=server.url("/x"), capture=capture)
                async with transport.exchange(request) as response:
                    assert response.status == 200
                    assert response.headers.getall("X-Two") == ["1", "2"]
                    assert "Link" not in response.headers
                    assert await response.read() == BODY
                (exchange,) = capture.exchanges
                assert exchange.request() == server.requests[index]
                assert b"".join(exchange.chunks) == FINAL
            assert server.connections == 1
    finally:
        await transport.close()
