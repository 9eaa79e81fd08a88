"""One HTTP/1.1 connection: an asyncio protocol that writes a request's bytes and parses
its response with httptools (llhttp), one exchange at a time (no pipelining).

The body is buffered as it arrives and taken by :meth:`WireConnection.take`; past
``_HIGH_WATER`` bytes held, reading pauses until the taker catches up. The connection tells
the request's :class:`~shoal.fetching.deadlines.Attempt` what the watchdog needs: connected
and sent (when the request is written), reading (waiting on the server, since the last
read) and not reading (body complete, or paused for the taker).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from shoal.capture import Exchange
from shoal.fetching.deadlines import Attempt
from shoal.fetching.session import MAX_HEADER_LINE_BYTES, MAX_HEADERS
from shoal.fetching.transport import TransportFailure
from shoal.fetching.wire import errors

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
#: Statuses whose response never has a body.
_NO_BODY = frozenset({204, 304})


class WireConnection(asyncio.Protocol):
    """A connection of the pool; ``key`` is its pool's key."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: object) -> None:
        self._loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        #: Requests sent on it.
        self.used = 0
        #: Called once when it closes (the pool forgets it).
        self.on_close: Callable[[WireConnection], None] | None = None
        self.peer: str | None = None
        self.peer_ip: str | None = None
        self._llhttp = httptools.HttpResponseParser(self)
        self._fresh_parser = False
        self._attempt: Attempt | None = None
        self._exchange: Exchange | None = None
        self._reset()

    def _reset(self) -> None:
        self._busy = False
        self._head_only = False
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self._fields: list[tuple[str, str]] = []
        self.headers: CIMultiDictProxy[str] | None = None
        self._body: deque[bytes] = deque()
        self._held = 0
        self.received = 0
        self.expected: int | None = None
        self._until_close = False
        self.complete = False
        self.keep_alive = False
        self._error: TransportFailure | None = None
        self._any_byte = False
        self._interim = False
        self._paused = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods.)
        self.transport = cast(asyncio.Transport, transport)
        address = transport.get_extra_info("peername")
        if isinstance(address, tuple) and len(address) >= 2:
            host, port = str(address[0]), address[1]
            self.peer_ip = host
            self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def data_received(self, data: bytes) -> None:
        if not self._busy or self.complete:
            self.close()  # bytes nobody asked for: the connection is not fit for reuse
            return
        exchange = self._exchange
        if exchange is not None:
            exchange.received(data)
        self._any_byte = True
        attempt = self._attempt
        if attempt is not None and attempt.protocol is self:
            attempt.last_read = self._loop.time()
        try:
            self._llhttp.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, TransportFailure) else errors.invalid(str(exc)))
        except httptools.HttpParserUpgrade:
            self._fail(errors.invalid("an upgrade to another protocol"))
        except httptools.HttpParserError as exc:
            self._fail(errors.invalid(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self._busy and not self.complete:
            if self.headers is None:
                self._fail(errors.lost(exc, early=not self._any_byte))
            elif self._until_close:
                self._finish(keep_alive=False)
            else:
                self._fail(errors.cut_short(self.received, self.expected))
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close(self)

    def pause_writing(self) -> None:  # a request body larger than the socket's buffer
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_HEADER_LINE_BYTES:
            raise errors.too_large("a header line", MAX_HEADER_LINE_BYTES)
        if len(self._fields) >= MAX_HEADERS:
            raise errors.too_large(f"more than {MAX_HEADERS} headers", MAX_HEADERS)
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._llhttp.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # skipped: llhttp reads it as a message without a body
            self._fields = []
            return
        self.status = status
        headers = CIMultiDictProxy(CIMultiDict(self._fields))
        self.headers = headers
        length = headers.get("Content-Length")
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        if length is not None and not chunked:
            try:
                self.expected = int(length)
            except ValueError:
                self.expected = None
        bodiless = self._head_only or status in _NO_BODY
        self._until_close = not bodiless and length is None and not chunked
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._head_only:
            # llhttp cannot be told the request was HEAD: it would wait for the body that
            # Content-Length announces. The message ends here; the next one gets a new parser.
            self._fresh_parser = True
            self._finish(keep_alive=self._llhttp.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self._head_only:
            return
        self._body.append(body)
        self.received += len(body)
        self._held += len(body)
        if self._held > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
            attempt = self._attempt
            if attempt is not None and attempt.protocol is self:
                attempt.reading = False
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self.complete:
            self._finish(keep_alive=self._llhttp.should_keep_alive())

    # -- the exchange's side -------------------------------------------------------------

    def send(self, data: bytes, *, head_only: bool, attempt: Attempt | None) -> None:
        """Write one request (``data``: all its bytes); its response is awaited by
        :meth:`head`."""
        self._reset()
        if self._fresh_parser:
            self._llhttp = httptools.HttpResponseParser(self)
            self._fresh_parser = False
        self._busy = True
        self._head_only = head_only
        self._head = self._loop.create_future()
        self.used += 1
        self._attempt = attempt
        if attempt is not None:
            attempt.protocol = self  # connected: the connect deadline no longer applies
            attempt.peer = self.peer
            sent = attempt.on_sent
            if sent is not None:
                attempt.on_sent = None
                sent()
            attempt.last_read = self._loop.time()
            attempt.reading = True
        if self.transport is None:
            self._fail(errors.lost(None, early=True))
            return
        self.transport.write(data)

    def capture(self, exchange: Exchange | None) -> None:
        """Hand every byte received from now on to ``exchange`` (``None``: keep none)."""
        self._exchange = exchange

    async def head(self) -> None:
        """Wait for the response's headers; raise its failure."""
        assert self._head is not None
        if not self._head.done():
            await self._head
        if self.headers is None:
            assert self._error is not None
            raise self._error

    async def take(self) -> bytes:
        """The body's bytes received since the last call; ``b""`` at its end."""
        while not self._body:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        body = self._body
        data = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._held = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
            attempt = self._attempt
            if attempt is not None and attempt.protocol is self and not self.complete:
                attempt.last_read = self._loop.time()
                attempt.reading = True
        return data

    def reusable(self) -> bool:
        """Whether its last exchange ended whole, with keep-alive, nothing left to read."""
        return self.complete and self.keep_alive and not self.closed and not self._body

    def release(self) -> None:
        """The exchange is over: forget its attempt and capture."""
        self._busy = False
        self._attempt = None
        self._exchange = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.closed = True

    # -- the watchdog's side (shoal.fetching.deadlines.Connection) -----------------------

    def serves(self, attempt: Attempt) -> bool:
        return self._attempt is attempt

    def read_timed_out(self) -> None:
        self._attempt = None
        self._fail(errors.read_timeout())
        self.close()

    # -- inside ----------------------------------------------------------------------------

    def _finish(self, *, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive
        attempt = self._attempt
        if attempt is not None and attempt.protocol is self:
            attempt.reading = False
        self._wake()

    def _fail(self, error: TransportFailure) -> None:
        if self._error is None and not self.complete:
            self._error = error
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
