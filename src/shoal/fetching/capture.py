"""Capturing the bytes of each HTTP exchange as they crossed the wire (for ``--warc``).

aiohttp parses responses inside its connection protocol and hands on only the decoded
body (transfer coding removed, content coding undone). An archive needs the response as
it arrived, so the session's connections use :class:`CapturingProtocol`: it keeps a copy
of every byte the protocol parses, per request, for the attempt that asked for it.

How bytes find their attempt: the fetcher sets :data:`current` (a context variable) to a
:class:`Capture` before it sends. aiohttp prepares a connection for each request it sends
(the first, then each redirect) by calling ``set_response_params`` from within that same
task, so the protocol reads the variable there and starts a new :class:`Exchange` on the
capture; from then on what the connection receives goes to that exchange, until the
connection is prepared for another request. A trace hook fills in each exchange's request
as aiohttp sent it (method, URL, headers, body), and reads a redirect's body to its end, so
the archived redirect is whole.

The response's status line, headers and body are the received bytes, untouched: chunked
framing and content coding stay as they were sent. The request is rebuilt from what
aiohttp reports it sent (its request line and headers in order, and the body).
"""

from __future__ import annotations

import contextvars
import re
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from shoal.fetching.deadlines import WatchedProtocol

#: The capture of the attempt running in this task, if it archives its exchanges.
current: contextvars.ContextVar[Capture | None] = contextvars.ContextVar(
    "shoal_capture", default=None
)


@dataclass(slots=True, eq=False)
class Exchange:
    """One request sent and the bytes received for it (one hop of a redirect chain)."""

    sent_at: float
    peer: str | None
    method: str | None = None
    #: The request as sent: its URL and headers (formatted by :meth:`request`, off the
    #: event loop), and its body.
    target: URL | None = None
    headers: CIMultiDict[str] | None = None
    body: bytes = b""
    #: The request line holds the whole URL, as it does to a plain HTTP proxy.
    absolute: bool = False
    #: Received bytes not yet handed on. Those of a large response are moved, as they
    #: come, to the end of the ``spool`` file, which then holds the bytes before them.
    chunks: list[bytes] = field(default_factory=list)
    pending: int = 0
    spool: str | None = None
    #: Why the received bytes are incomplete (a redirect's body is read for the archive
    #: only): ``length`` (past the cap) or ``disconnect`` (it broke off or stalled); the
    #: record's ``WARC-Truncated``.
    truncated: str | None = None

    @property
    def url(self) -> str:
        assert self.target is not None
        return str(self.target)

    def received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.pending += len(data)

    def request(self) -> bytes:
        """The request's bytes: its line and headers as aiohttp writes them, and its body."""
        assert self.method is not None and self.target is not None
        # The whole URL to a plain HTTP proxy, the path and query otherwise.
        target = str(self.target) if self.absolute else self.target.raw_path_qs or "/"
        lines = [f"{self.method} {target} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in (self.headers or {}).items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        return head + self.body

    def drop_interim(self) -> None:
        """Leave out interim responses received before the final one (``103 Early Hints``,
        say): aiohttp skips them, and a record holds one response. Called once the final
        response's headers are in."""
        if not self.chunks:
            return
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        if not _INTERIM.match(data):
            return
        while _INTERIM.match(data) and (end := header_end(data)) >= 0:
            data = data[end:]
        self.chunks, self.pending = [data], len(data)

    def take(self) -> list[bytes]:
        """The received bytes not taken before."""
        chunks, self.chunks, self.pending = self.chunks, [], 0
        return chunks


#: The start of an interim (1xx) response, but not ``101 Switching Protocols``.
_INTERIM = re.compile(rb"HTTP/\d(?:\.\d)? +1(?!01)\d\d")


def header_end(data: bytes) -> int:
    """Where an HTTP message's header section ends (just past its empty line), or -1."""
    crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf + 2 <= lf):
        return crlf + 4
    return lf + 2 if lf >= 0 else -1


@dataclass(slots=True, eq=False)
class Capture:
    """The exchanges of one attempt, in the order they were sent."""

    #: A redirect's body is read for the archive up to this many bytes.
    redirect_cap: int
    exchanges: list[Exchange] = field(default_factory=list)
    #: Received bytes it holds in memory, counted against its :class:`Budget`.
    held: int = 0
    #: Its requests go through an HTTP proxy.
    proxied: bool = False

    def start(self, peer: str | None) -> Exchange:
        exchange = Exchange(time.time(), peer)
        self.exchanges.append(exchange)
        return exchange

    @property
    def sent(self) -> list[Exchange]:
        """The exchanges aiohttp reported sending (a proxy's CONNECT is not one of them)."""
        return [exchange for exchange in self.exchanges if exchange.method is not None]

    @property
    def spools(self) -> list[str]:
        """The spool files of its exchanges (to remove when the capture is not kept)."""
        return [exchange.spool for exchange in self.exchanges if exchange.spool is not None]


class Budget:
    """How many received bytes all captures waiting to be archived may hold in memory;
    past it, a finished response's bytes go to its spool file. Used on the event loop
    only."""

    def __init__(self, limit: int = 32 * 1024 * 1024) -> None:
        self.limit = limit
        self.held = 0

    def hold(self, capture: Capture) -> bool:
        """Count ``capture``'s bytes in memory, if they fit."""
        size = sum(exchange.pending for exchange in capture.exchanges)
        if self.held + size > self.limit:
            return False
        capture.held = size
        self.held += size
        return True

    def release(self, capture: Capture) -> None:
        self.held -= capture.held
        capture.held = 0


class CapturingProtocol(WatchedProtocol):
    """aiohttp's connection protocol, keeping a copy of each response's bytes."""

    _exchange: Exchange | None = None

    def set_response_params(self, **params: Any) -> None:
        capture = current.get()
        if capture is None:
            self._exchange = None
        else:
            peer = None
            transport = self.transport
            if transport is not None:
                address = transport.get_extra_info("peername")
                if isinstance(address, tuple) and address:
                    peer = str(address[0])
            self._exchange = capture.start(peer)
        super().set_response_params(**params)

    def data_received(self, data: bytes) -> None:
        exchange = self._exchange
        # Bytes that reach the HTTP parser; none arrive before the first request is sent.
        if exchange is not None and data and self._parser is not None and not self._upgraded:
            exchange.received(data)
        super().data_received(data)


def trace_config() -> aiohttp.TraceConfig:
    """The trace hooks that record each exchange's request and complete its redirects."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_headers_sent)
    config.on_request_chunk_sent.append(_chunk_sent)
    config.on_request_redirect.append(_redirect)
    return config


def _latest() -> Exchange | None:
    capture = current.get()
    if capture is None or not capture.exchanges:
        return None
    return capture.exchanges[-1]


async def _headers_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    capture = current.get()
    if capture is not None and capture.exchanges:
        exchange = capture.exchanges[-1]
        # Like aiohttp: the whole URL to a proxy, unless it is tunnelled (https).
        exchange.absolute = capture.proxied and params.url.scheme not in ("https", "wss")
        exchange.method = params.method
        exchange.target = params.url
        exchange.headers = params.headers


async def _chunk_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestChunkSentParams,
) -> None:
    exchange = _latest()
    if exchange is not None and exchange.method is not None:
        exchange.body += params.chunk


async def _redirect(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    """Read a redirect's body (aiohttp would drop it) so its exchange is archived whole.

    Only a redirect aiohttp will follow (it has a Location): one without is the final
    response, whose body the fetcher reads. A body that breaks off or stalls is archived
    as far as it came, and the redirect is followed all the same, as without an archive.
    """
    capture = current.get()
    if capture is None or not capture.exchanges:
        return
    exchange = capture.exchanges[-1]
    response = params.response
    exchange.drop_interim()
    if "Location" not in response.headers and "URI" not in response.headers:
        return
    content = response.content
    read = 0
    try:
        while not content.at_eof():
            chunk = await content.readany()
            if not chunk:
                break
            read += len(chunk)
            if read > capture.redirect_cap:
                exchange.truncated = "length"
                break
    except aiohttp.ClientError:  # the between-reads timeout too
        exchange.truncated = "disconnect"
