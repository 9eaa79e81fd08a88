"""The bytes of each HTTP exchange as they crossed the wire (for ``--warc``): plain values.

A transport that archives (see :mod:`shoal.fetching.transport`) starts an :class:`Exchange`
on the attempt's :class:`Capture` for each request it sends (the first, then each redirect),
fills in the request as it was sent, and hands each received byte to it, untouched: chunked
framing and content coding stay as they were sent. The fetcher spools a large response's
bytes to a file as they come; the archive (:mod:`shoal.sinks.warc`) writes the records. A
:class:`Budget` bounds what all captures waiting to be archived hold in memory.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from multidict import CIMultiDict
from yarl import URL


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
        """The request's bytes: its line and headers as they were written, and its body."""
        assert self.method is not None and self.target is not None
        # The whole URL to a plain HTTP proxy, the path and query otherwise.
        target = str(self.target) if self.absolute else self.target.raw_path_qs or "/"
        lines = [f"{self.method} {target} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in (self.headers or {}).items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        return head + self.body

    def drop_interim(self) -> None:
        """Leave out interim responses received before the final one (``103 Early Hints``,
        say): the transport skips them, and a record holds one response. Called once the final
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
        """The exchanges the transport reported sending (a proxy's CONNECT is not one of them)."""
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
