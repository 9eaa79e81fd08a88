"""The wire transport: shoal's :class:`~shoal.fetching.transport.Transport` on connections
of its own (:mod:`shoal.fetching.wire.connection`, pooled by :mod:`shoal.fetching.wire.pool`).

It writes each request's bytes itself (request line, ``Host``, the session's headers, the
request's, the body) and follows redirects in a loop of its own, with the aiohttp
transport's rules: 303 (and 301/302 after a POST) becomes a GET without a body, and
``Authorization`` is dropped when the origin changes.

A request whose *reused* idle connection closes before any byte of the response arrives
is sent again at once on a fresh connection, once (an idempotent method, or one whose
bytes were never written); :attr:`WireTransport.resends` counts them.

Left to the aiohttp transport for now: HTTP proxies (and CONNECT) and cookie jars.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from shoal.capture import Capture, Exchange
from shoal.errors import Error, ErrorKind
from shoal.fetching import decoding
from shoal.fetching.resolver import StaticResolver
from shoal.fetching.session import SessionSettings
from shoal.fetching.transport import Incoming, Outgoing, TransportFailure
from shoal.fetching.wire import errors
from shoal.fetching.wire.connection import WireConnection
from shoal.fetching.wire.pool import Key, Pool

log = logging.getLogger("shoal")

#: Methods that may be sent twice with the effect of once (RFC 9110, 9.2.2).
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: A redirect's body up to this long is read, so its connection can serve the next hop.
_SMALL = 64 * 1024
#: The codings the fetcher can undo (as aiohttp asks for them).
_ACCEPT_ENCODING = ", ".join(
    ["gzip", "deflate"]
    + (["br"] if getattr(decoding, "brotli", None) is not None else [])
    + (["zstd"] if getattr(decoding, "_HAS_ZSTD", False) else [])
)


class WireTransport:
    """Requests on pooled connections of shoal's own, opened with ``settings``;
    ``per_host``: connections to one host (scheme, name, port) at most (all of
    ``settings.connections`` when not given)."""

    def __init__(self, settings: SessionSettings, *, per_host: int | None = None) -> None:
        if settings.cookies:
            raise NotImplementedError("the wire transport keeps no cookies yet")
        resolver = settings.resolver
        if settings.resolve:
            resolver = StaticResolver(settings.resolve, resolver)
        tls = settings.tls_context if settings.verify_tls and settings.tls_context else None
        self.pool = Pool(
            resolver=resolver,
            tls=tls if tls is not None else bool(settings.verify_tls),
            per_host=per_host or settings.connections,
            total=settings.connections,
        )
        defaults = CIMultiDict({"Accept": "*/*", "Accept-Encoding": _ACCEPT_ENCODING})
        for name, value in settings.headers.items():
            defaults[name] = value
        self._defaults = defaults
        #: Requests sent again because their reused connection closed before the answer.
        self.resends = 0

    def exchange(self, request: Outgoing) -> _Exchange:
        return _Exchange(self, request)

    async def close(self) -> None:
        await self.pool.close()  # the resolver is the engine's, closed by it

    # -- one request, redirects followed ---------------------------------------------------

    async def send(self, request: Outgoing) -> _Response:
        if request.proxy is not None:
            raise errors.unsupported("proxies")
        url = request.url if isinstance(request.url, URL) else URL(request.url)
        method = request.method.upper()
        body = request.body.encode() if isinstance(request.body, str) else request.body
        headers = self._defaults.copy()
        for name, value in (request.headers or {}).items():
            headers[name] = value
        history: list[tuple[str, int]] = []
        while True:
            key = _key_of(url)
            connection = await self._one(key, method, url, headers, body, request)
            response = _Response(self.pool, connection, url, history)
            location = connection.headers.get("Location") if connection.headers else None
            if request.max_redirects <= 0 or connection.status not in _REDIRECTS or not location:
                return response
            history.append((str(url), connection.status))
            await self._finish_redirect(response, request.capture)
            if len(history) > request.max_redirects:
                text = (
                    f"more than {request.max_redirects} redirects (max_redirects);"
                    f" the last from {url} to {location}"
                )
                raise TransportFailure(Error(ErrorKind.TOO_MANY_REDIRECTS, text[:500]), history)
            target = url.join(URL(location, encoded=True))
            if target.scheme not in ("http", "https"):
                failure = TransportFailure(Error(ErrorKind.UNSUPPORTED_SCHEME, str(target)))
                raise failure
            status = connection.status
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
            if target.origin() != url.origin():
                headers.popall("Authorization", None)
            url = target

    async def _one(
        self,
        key: Key,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes | None,
        request: Outgoing,
    ) -> WireConnection:
        """Send one request and wait for its response's headers (resent once, when a
        reused connection closed first)."""
        sent = _request_bytes(method, url, key, headers, body)
        fresh = False
        while True:
            connection, reused = await self.pool.acquire(key, fresh=fresh)
            exchange = _start(request.capture, connection, method, url, sent[1], body)
            written = not connection.closed
            try:
                connection.capture(exchange)
                connection.send(sent[0], head_only=method == "HEAD", attempt=request.attempt)
                await connection.head()
            except errors.Disconnected as failure:
                self.pool.release(connection)
                resend = reused and failure.early and (method in _IDEMPOTENT or not written)
                if not resend or fresh:
                    raise
                if exchange is not None and request.capture is not None:
                    request.capture.exchanges.remove(exchange)
                self.resends += 1
                fresh = True
                continue
            except BaseException:
                self.pool.release(connection)
                raise
            if exchange is not None:
                exchange.drop_interim()
            return connection

    async def _finish_redirect(self, response: _Response, capture: Capture | None) -> None:
        """Read a redirect's body (for the archive, up to its cap) and let its connection go."""
        try:
            if capture is not None:
                read = 0
                exchange = capture.exchanges[-1] if capture.exchanges else None
                try:
                    async for chunk in response.chunks():
                        read += len(chunk)
                        if read > capture.redirect_cap:
                            if exchange is not None:
                                exchange.truncated = "length"
                            break
                except TransportFailure:
                    if exchange is not None:
                        exchange.truncated = "disconnect"
            elif (response.content_length or _SMALL) < _SMALL:
                with contextlib.suppress(TransportFailure):
                    await response.read()  # small: read to keep the connection
        finally:
            response.finish()


def _key_of(url: URL) -> Key:
    scheme = url.scheme
    if scheme not in ("http", "https"):
        raise TransportFailure(Error(ErrorKind.UNSUPPORTED_SCHEME, f"{url}"))
    host = url.raw_host
    if not host:
        raise TransportFailure(Error(ErrorKind.INVALID_URL, f"{url}"))
    secure = scheme == "https"
    return Key(secure, host, url.port or (443 if secure else 80))


def _request_bytes(
    method: str, url: URL, key: Key, headers: CIMultiDict[str], body: bytes | None
) -> tuple[bytes, CIMultiDict[str]]:
    """The request's bytes, and its headers as sent (for the archive)."""
    host = f"[{key.host}]" if ":" in key.host else key.host
    if url.port is not None and not url.is_default_port():
        host = f"{host}:{key.port}"
    sent = CIMultiDict({"Host": host})
    for name, value in headers.items():
        if name.lower() != "host":
            sent.add(name, value)
        else:
            sent["Host"] = value
    if body is not None or method in ("POST", "PUT", "PATCH"):
        sent["Content-Length"] = str(len(body or b""))
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in sent.items())
    for line in lines:
        if "\r" in line or "\n" in line:
            raise TransportFailure(Error(ErrorKind.PROTOCOL, f"a line break in {line[:100]!r}"))
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise TransportFailure(Error(ErrorKind.PROTOCOL, f"{type(exc).__name__}: {exc}")) from exc
    return head + (body or b""), sent


def _start(
    capture: Capture | None,
    connection: WireConnection,
    method: str,
    url: URL,
    headers: CIMultiDict[str],
    body: bytes | None,
) -> Exchange | None:
    if capture is None:
        return None
    exchange = capture.start(connection.peer_ip)
    exchange.method, exchange.target, exchange.headers = method, url, headers
    exchange.body = body or b""
    return exchange


class _Exchange:
    """One request on the transport, entered as its response."""

    __slots__ = ("_request", "_response", "_transport")

    def __init__(self, transport: WireTransport, request: Outgoing) -> None:
        self._transport = transport
        self._request = request
        self._response: _Response | None = None

    async def __aenter__(self) -> Incoming:
        self._response = await self._transport.send(self._request)
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.finish()


class _Response:
    """A response on a connection, as an :class:`Incoming`."""

    __slots__ = ("_history", "_pool", "_url", "connection")

    def __init__(
        self, pool: Pool, connection: WireConnection, url: URL, history: list[tuple[str, int]]
    ) -> None:
        self._pool = pool
        self.connection: WireConnection | None = connection
        self._url = url
        self._history = list(history)

    @property
    def status(self) -> int:
        return self._connection.status

    @property
    def url(self) -> str:
        return str(self._url)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        headers = self._connection.headers
        assert headers is not None
        return headers

    @property
    def history(self) -> Sequence[tuple[str, int]]:
        return self._history

    @property
    def content_length(self) -> int | None:
        return self._connection.expected

    @property
    def _connection(self) -> WireConnection:
        connection = self.connection
        if connection is None:
            raise RuntimeError("the response is closed")
        return connection

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def chunks(self) -> AsyncIterator[bytes]:
        return _Chunks(self._connection)

    def finish(self) -> None:
        """Give the connection back (to the pool only if its body came whole)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            self._pool.release(connection)


class _Chunks:
    __slots__ = ("_connection",)

    def __init__(self, connection: WireConnection) -> None:
        self._connection = connection

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._connection.take()
        if not chunk:
            raise StopAsyncIteration
        return chunk
