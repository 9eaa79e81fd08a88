"""The wire transport under shoal's watchdog: a silent server fails the read as the
between-reads timeout, the total deadline ends a trickle, a reader that is behind pauses
the socket without being taken for a silent server, and a connection is never reused after
any of them."""

from __future__ import annotations

import asyncio

from shoal.config import Timeouts
from shoal.fetching.deadlines import Watchdog
from shoal.fetching.session import SessionSettings
from shoal.fetching.transport import Outgoing, TransportFailure
from shoal.fetching.wire import WireTransport
from tests.fetching.wire.raw import RawServer, Reply, reply

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
BIG = 2 * 1024 * 1024


def answer(connection: int, index: int, request: bytes) -> Reply:
    path = request.split(b" ")[1]
    if path == b"/silent-head":
        return Reply([], delay_s=30) if connection == 0 else reply(OK)
    if path == b"/silent-body":
        return Reply([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", b""], delay_s=0)
    if path == b"/trickle":
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        return Reply([head] + [b"x"] * 1000, gap_s=0.01)
    if path == b"/big":
        return Reply([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG, b"b" * BIG])
    return reply(OK)


async def run(
    transport: WireTransport,
    url: str,
    timeouts: Timeouts,
    *,
    lag_s: float = 0,
    sizes: list[int] | None = None,
) -> tuple[str, bytes | str]:
    """One attempt under a watchdog; ``lag_s``: the reader waits that long before it reads."""
    watchdog = Watchdog(0.01)
    attempt = watchdog.start(timeouts)
    sent: list[bool] = []
    attempt.on_sent = lambda: sent.append(True)
    try:
        async with transport.exchange(Outgoing(method="GET", url=url, attempt=attempt)) as r:
            assert sent == [True] and attempt.peer is not None
            await asyncio.sleep(lag_s)
            chunks = [chunk async for chunk in r.chunks()]
            if sizes is not None:
                sizes.extend(map(len, chunks))
            return "body", b"".join(chunks)
    except TransportFailure as failure:
        return failure.error.kind, failure.error.message
    except asyncio.CancelledError:
        assert attempt.timed_out()
        return "cancelled", attempt.expired or ""
    finally:
        watchdog.end(attempt)
        watchdog.close()


async def test_a_silent_server_fails_the_read_and_is_not_reused() -> None:
    transport = WireTransport(SessionSettings(connections=4))
    timeouts = Timeouts(total_s=5, connect_s=1, read_s=0.1)
    try:
        async with RawServer(answer) as server:
            for path in ("/silent-head", "/silent-body"):
                outcome = await run(transport, server.url(path), timeouts)
                assert outcome == ("timeout", "Timeout on reading data from socket"), path
                assert transport.pool.idle == 0
            assert await run(transport, server.url("/ok"), timeouts) == ("body", b"ok")
            assert server.connections == 3
    finally:
        await transport.close()


async def test_the_total_deadline_ends_a_trickle() -> None:
    transport = WireTransport(SessionSettings(connections=4))
    try:
        async with RawServer(answer) as server:
            timeouts = Timeouts(total_s=0.2, connect_s=1, read_s=1)
            assert await run(transport, server.url("/trickle"), timeouts) == ("cancelled", "total")
            assert transport.pool.idle == 0
    finally:
        await transport.close()


async def test_a_reader_behind_pauses_the_socket_without_a_read_timeout() -> None:
    transport = WireTransport(SessionSettings(connections=4))
    timeouts = Timeouts(total_s=5, connect_s=1, read_s=0.1)
    try:
        async with RawServer(answer) as server:
            sizes: list[int] = []
            kind, body = await run(transport, server.url("/big"), timeouts, lag_s=0.4, sizes=sizes)
            assert (kind, len(body)) == ("body", BIG)
            assert sizes[0] <= 1024 * 1024  # reading paused: the rest waited in the socket
            assert await run(transport, server.url("/ok"), timeouts) == ("body", b"ok")
            assert server.connections == 1
    finally:
        await transport.close()
