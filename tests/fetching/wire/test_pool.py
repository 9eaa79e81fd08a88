"""The wire transport's pool: connections shared up to the per-host cap, and the resend of
a request whose reused keep-alive connection the server had closed."""

from __future__ import annotations

import asyncio

import pytest

from shoal import ErrorKind
from shoal.fetching.session import SessionSettings
from shoal.fetching.transport import Outgoing, TransportFailure
from shoal.fetching.wire import WireTransport
from tests.fetching.wire.raw import RawServer, Reply, reply
from tests.helpers import free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def get(transport: WireTransport, url: str, method: str = "GET") -> bytes:
    body = b"x" if method == "POST" else None
    async with transport.exchange(Outgoing(method=method, url=url, body=body)) as response:
        return await response.read()


async def test_connections_to_a_host_stay_within_its_cap() -> None:
    transport = WireTransport(SessionSettings(connections=50), per_host=3)
    slow = Reply([OK], delay_s=0.01)
    try:
        async with RawServer(lambda c, i, r: slow) as server:
            bodies = await asyncio.gather(*(get(transport, server.url()) for _ in range(30)))
            assert bodies == [b"ok"] * 30
            assert server.connections == 3 and server.most_open == 3
            assert transport.pool.idle == 3
    finally:
        await transport.close()


async def test_sequential_requests_share_one_connection() -> None:
    transport = WireTransport(SessionSettings(connections=4))
    try:
        async with RawServer(lambda c, i, r: reply(OK)) as server:
            for _ in range(10):
                assert await get(transport, server.url()) == b"ok"
            assert server.connections == 1 and len(server.requests) == 10
    finally:
        await transport.close()


async def test_the_overall_cap_closes_an_idle_connection_of_another_host() -> None:
    transport = WireTransport(SessionSettings(connections=1))
    try:
        async with (
            RawServer(lambda c, i, r: reply(OK)) as one,
            RawServer(lambda c, i, r: reply(OK)) as two,
        ):
            for server in (one, two, one):
                assert await get(transport, server.url()) == b"ok"
            assert (one.connections, two.connections) == (2, 1)
            assert transport.pool.idle == 1
    finally:
        await transport.close()


def closing_between_requests(connection: int, index: int, request: bytes) -> Reply:
    """Each connection answers one request, then closes when the next one comes."""
    return reply(OK) if index == 0 else Reply(drop=True)


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
async def test_a_reused_connection_closed_by_the_server_is_resent_once(method: str) -> None:
    transport = WireTransport(SessionSettings(connections=4))
    try:
        async with RawServer(closing_between_requests) as server:
            for _ in range(4):
                await get(transport, server.url(), method)
            assert transport.resends == 3
            assert server.connections == 4 and len(server.requests) == 7
    finally:
        await transport.close()


async def test_a_post_written_on_a_closed_connection_is_not_resent() -> None:
    transport = WireTransport(SessionSettings(connections=4))
    try:
        async with RawServer(closing_between_requests) as server:
            assert await get(transport, server.url(), "POST") == b"ok"
            with pytest.raises(TransportFailure) as raised:
                await get(transport, server.url(), "POST")
            assert (raised.value.error.kind, raised.value.error.message) == (
                ErrorKind.RESET,
                "Server disconnected",
            )
            assert transport.resends == 0
    finally:
        await transport.close()


async def test_a_fresh_connection_that_closes_is_not_resent() -> None:
    transport = WireTransport(SessionSettings(connections=4))
    try:
        async with RawServer(lambda c, i, r: Reply(drop=True)) as server:
            with pytest.raises(TransportFailure) as raised:
                await get(transport, server.url())
            assert raised.value.error.kind is ErrorKind.RESET
            assert transport.resends == 0 and server.connections == 1
    finally:
        await transport.close()


async def test_a_refused_connection_names_its_endpoint() -> None:
    transport = WireTransport(SessionSettings(connections=4))
    port = free_port()
    try:
        with pytest.raises(TransportFailure) as raised:
            await get(transport, f"http://127.0.0.1:{port}/")
    finally:
        await transport.close()
    error = raised.value.error
    assert error.kind is ErrorKind.CONNECT
    assert error.endpoint == f"http://127.0.0.1:{port}"
    assert error.message.startswith(f"Cannot connect to host 127.0.0.1:{port} ssl:default [")
    assert transport.pool.idle == 0
