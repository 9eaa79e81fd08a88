"""The seam between shoal and an HTTP client library: one exchange of one attempt.

A :class:`Transport` takes an :class:`Outgoing` request and answers with an
:class:`Incoming` response, entered as an async context manager (as httpx's
``AsyncBaseTransport.handle_async_request``): its status, headers and final URL, its body
streamed in chunks as the server sent them (content coding left as it came), and, when the
request carries a :class:`shoal.capture.Capture`, every byte on the wire for the archive.
Connection pools, proxies and TLS live behind it.

What stays shoal's, shared by every transport: the deadlines (the transport tells the
request's :class:`~shoal.fetching.deadlines.Attempt` when it is connected, sent and
reading), retries, content decoding, the size limit, cookies (the jar) and DNS (the
resolver). A failure the transport meets is a :class:`TransportFailure` holding the
:class:`shoal.Error` it comes to, so no exception of a library reaches the fetcher.

:mod:`shoal.fetching.aiohttp_transport` is the first implementation, and the only module
that touches aiohttp's internals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDictProxy
from yarl import URL

from shoal.capture import Capture
from shoal.errors import Error
from shoal.fetching.deadlines import Attempt


@dataclass(slots=True, kw_only=True)
class Outgoing:
    """One attempt's request, as the transport sends it (built once per attempt, and not
    changed by the transport; not frozen: a frozen class's constructor costs twice as much)."""

    method: str
    url: str | URL
    headers: Mapping[str, str] | None = None
    body: str | bytes | None = None
    proxy: str | None = None
    #: Redirects followed at most (0: none; the redirect is the answer).
    max_redirects: int = 10
    #: The attempt's deadlines: the transport marks its progress (see ``deadlines``).
    attempt: Attempt | None = None
    #: Where to keep the bytes of each exchange, when the attempt is archived.
    capture: Capture | None = None


class Incoming(Protocol):
    """The response to an :class:`Outgoing` request, valid inside its context."""

    @property
    def status(self) -> int: ...
    @property
    def url(self) -> str:
        """The final URL (after redirects)."""
        ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def history(self) -> Sequence[tuple[str, int]]:
        """Each redirect followed, in order: the URL answered and its status."""
        ...

    @property
    def content_length(self) -> int | None: ...
    async def read(self) -> bytes:
        """The whole body as sent (for a small one of known length)."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as sent, a piece at a time as it arrives."""
        ...


class Transport(Protocol):
    """Sends requests: one method for one exchange (and ``close`` for its lifetime)."""

    def exchange(self, request: Outgoing) -> AbstractAsyncContextManager[Incoming]:
        """Send ``request`` and enter its response (headers in, body not yet read).

        Raises :class:`TransportFailure` for a request that fails (on entering, or while
        the body is read); a cancellation passes through.
        """
        ...

    async def close(self) -> None: ...


class TransportFailure(Exception):
    """A request failed in the transport: ``error`` says how (a shoal error kind), and
    ``redirect_chain`` the redirects followed before it, when they are known."""

    def __init__(self, error: Error, redirect_chain: list[tuple[str, int]] | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.redirect_chain = redirect_chain
