"""The aiohttp transport: shoal's :class:`~shoal.fetching.transport.Transport` on one
``aiohttp.ClientSession``, and the only module that touches aiohttp's internals.

Those internals, all checked against the aiohttp versions in :data:`SUPPORTED` when this
module is imported:

* the connection protocol (``aiohttp.client_proto.ResponseHandler``): :class:`WatchedProtocol`
  overrides ``set_response_params``, ``_reschedule_timeout`` and ``_drop_timeout`` and calls
  ``_on_read_timeout``, so the fetcher's watchdog keeps the deadlines
  (:mod:`shoal.fetching.deadlines`); :class:`CapturingProtocol` reads ``_parser`` and
  ``_upgraded`` to copy the bytes of each exchange for the archive (:mod:`shoal.capture`);
* the connector's protocol factory (``_factory``, ``_loop``), which makes its connections
  use those protocols;
* the session's ``_retry_connection``, turned off so one attempt is one request on the wire.

The timeout and archive tests fail if a change in aiohttp breaks any of them; the range's
upper bound is the next minor release, which may move them (aiohttp 4 refactors
``ClientRequest``), and ``pyproject.toml`` holds the same bound.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, cast

import aiohttp
from aiohttp.client_proto import ResponseHandler
from multidict import CIMultiDictProxy

from shoal.capture import Exchange
from shoal.errors import Error, ErrorKind
from shoal.fetching import deadlines
from shoal.fetching.aiohttp_traces import current_capture, trace_config
from shoal.fetching.cookies import SiteCookieJar
from shoal.fetching.deadlines import Attempt
from shoal.fetching.failures import classify
from shoal.fetching.resolver import StaticResolver
from shoal.fetching.session import MAX_HEADER_LINE_BYTES, MAX_HEADERS, SessionSettings
from shoal.fetching.transport import Incoming, Outgoing, TransportFailure

log = logging.getLogger("shoal")

#: The aiohttp versions whose internals this module was written against: lowest included,
#: highest excluded (``pyproject.toml``'s dependency has the same range).
SUPPORTED = ((3, 14, 4), (3, 15))


def version_of(text: str) -> tuple[int, ...]:
    """``3.14.5`` (or ``3.14.5rc1``, ``3.15.0.dev0``) as ``(3, 14, 5)``."""
    parts = []
    for part in text.split(".")[:3]:
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_version(text: str) -> None:
    """Raise ImportError unless aiohttp ``text`` lies in :data:`SUPPORTED`."""
    low, high = SUPPORTED
    if not low <= version_of(text) < high:
        shown = ".".join(map(str, low)), ".".join(map(str, high))
        raise ImportError(
            f"shoal needs aiohttp >={shown[0]},<{shown[1]} (its transport uses aiohttp's"
            f" internals, checked for those versions only); aiohttp {text} is installed"
        )


check_version(aiohttp.__version__)


class AiohttpTransport:
    """Requests on one aiohttp session, opened with ``settings``."""

    def __init__(self, settings: SessionSettings) -> None:
        self.session = open_session(settings)

    def exchange(self, request: Outgoing) -> _Exchange:
        return _Exchange(self.session, request)

    async def close(self) -> None:
        await self.session.close()


class _Exchange:
    """One request on the session, entered as its response. While it is open, the
    connection protocol and the trace hooks of this task find the request's attempt and
    capture in their context variables (aiohttp prepares each connection in this task)."""

    __slots__ = ("_request", "_response", "_session", "_tokens")

    def __init__(self, session: aiohttp.ClientSession, request: Outgoing) -> None:
        self._session = session
        self._request = request
        self._response: aiohttp.ClientResponse | None = None
        self._tokens: tuple[Any, Any] | None = None

    async def __aenter__(self) -> Incoming:
        request = self._request
        self._tokens = deadlines.current.set(request.attempt), current_capture.set(request.capture)
        try:
            # The session's request coroutine, awaited as it is: its context manager
            # (two more coroutines per request) would only release it at the end, as
            # __aexit__ does here.
            response = await self._session._request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                # aiohttp fails on the n-th redirect when given n, and follows forever when
                # given 0.
                allow_redirects=request.max_redirects > 0,
                max_redirects=request.max_redirects + 1,
                proxy=request.proxy,
                # The body's content codings are undone by the fetcher, not by aiohttp,
                # which cannot tell a body cut short in its coding from a whole one.
                auto_decompress=False,
            )
        except BaseException as exc:
            self._reset()
            failure = _failure(exc, request)
            if failure is exc:
                raise
            raise failure from exc
        capture = request.capture
        if capture is not None and capture.exchanges:
            capture.exchanges[-1].drop_interim()
        self._response = response
        return _Response(response)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        response, self._response = self._response, None
        try:
            if response is not None:
                response.release()
                await response.wait_for_close()
        finally:
            self._reset()

    def _reset(self) -> None:
        tokens, self._tokens = self._tokens, None
        if tokens is not None:
            deadlines.current.reset(tokens[0])
            current_capture.reset(tokens[1])


def _failure(exc: BaseException, request: Outgoing) -> BaseException:
    """What a failure to send ``request`` becomes: a :class:`TransportFailure`, unless it
    is no request's failure (a cancellation, say), which goes on as it is."""
    if isinstance(exc, aiohttp.TooManyRedirects):
        chain = [(str(hop.url), hop.status) for hop in exc.history]
        return TransportFailure(_redirect_loop(exc, request.max_redirects), chain)
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        # The watchdog's between-reads timeout arrives as aiohttp's own (a
        # ServerTimeoutError); classify names it.
        return TransportFailure(classify(exc))
    if isinstance(exc, ValueError | TypeError | LookupError):
        # aiohttp rejects some requests it cannot encode (a header value outside latin-1,
        # say): that request fails, the run goes on.
        log.warning("request %s failed unexpectedly", request.url, exc_info=exc)
        return TransportFailure(Error(ErrorKind.PROTOCOL, f"{type(exc).__name__}: {exc}"))
    return exc


class _Response:
    """An aiohttp response as an :class:`Incoming`."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def url(self) -> str:
        return str(self._response.url)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._response.headers

    @property
    def history(self) -> Sequence[tuple[str, int]]:
        return [(str(hop.url), hop.status) for hop in self._response.history]

    @property
    def content_length(self) -> int | None:
        return self._response.content_length

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransportFailure(classify(exc)) from exc

    def chunks(self) -> AsyncIterator[bytes]:
        return _Chunks(self._response.content)


class _Chunks:
    """A body's chunks as they arrive; the transport's failures as :class:`TransportFailure`."""

    __slots__ = ("_content",)

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._content.readany()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransportFailure(classify(exc)) from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk


def _redirect_loop(exc: aiohttp.TooManyRedirects, limit: int) -> Error:
    """A chain longer than ``limit``, named with where it went last (aiohttp's own message
    is empty)."""
    last = exc.history[-1] if exc.history else None
    location = None if last is None else last.headers.get("Location")
    where = f"{last.url}" if last is not None else str(exc.request_info.real_url)
    text = f"more than {limit} redirects (max_redirects); the last from {where}"
    if location is not None:
        text += f" to {location}"
    return Error(ErrorKind.TOO_MANY_REDIRECTS, text[:500])


def open_session(settings: SessionSettings) -> aiohttp.ClientSession:
    """A session tuned for bulk fetching.

    No cookie jar unless asked for (every request stands alone, and a jar costs CPU per
    request; with ``cookies``, one bounded jar per site), no
    silent resends (see below), no environment proxies, no pool wait (the scheduler
    already caps requests in flight, so the connector's limit is only a safety net), and
    no timeouts of aiohttp's: the three deadlines of an attempt (total, connect, between
    reads) are kept by the fetcher's watchdog (:mod:`shoal.fetching.deadlines`), whose
    protocol the connections use.
    """
    resolver = settings.resolver  # the engine's (a CachingResolver unless the caller's)
    if settings.resolve:
        resolver = StaticResolver(settings.resolve, resolver)
    tls: ssl.SSLContext | bool = bool(settings.verify_tls)
    if settings.verify_tls and settings.tls_context is not None:
        tls = settings.tls_context
    connector = aiohttp.TCPConnector(
        limit=settings.connections,
        limit_per_host=0,
        ssl=tls,
        resolver=resolver,
        # aiohttp's own cache in front of the resolver's: 1,000 names for 10 s at most, so
        # it shares lookups of a burst of connections and leaves the TTLs to the resolver.
        ttl_dns_cache=10,
    )
    traces = []
    if settings.capture:
        _install(connector, CapturingProtocol)
        traces.append(trace_config())
    else:
        _install(connector, WatchedProtocol)
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=SiteCookieJar() if settings.cookies else aiohttp.DummyCookieJar(),
        headers=dict(settings.headers),
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None),
        trust_env=False,
        max_line_size=MAX_HEADER_LINE_BYTES,
        max_field_size=MAX_HEADER_LINE_BYTES,
        max_headers=MAX_HEADERS,
        trace_configs=traces or None,
    )
    # aiohttp quietly sends an idempotent request a second time when the connection fails
    # before the response. shoal counts attempts, and its retry policy decides (and waits)
    # for every resend, so this one is turned off: one attempt is one request on the wire.
    # It is an internal attribute of aiohttp (checked by the version range above).
    session._retry_connection = False
    return session


class WatchedProtocol(ResponseHandler):
    """aiohttp's connection protocol, telling the watchdog when its attempt progresses.

    It takes over aiohttp's between-reads timer: the two methods that arm and disarm that
    timer keep the attempt's ``last_read`` and ``reading`` instead (aiohttp is given no
    read timeout, so it would arm nothing).
    """

    _attempt: Attempt | None = None
    #: The far end's ``host:port``, read once per connection (it never changes).
    _peer: str | None = None

    def set_response_params(self, **params: Any) -> None:
        # The session's requests pass read_timeout; the connector's CONNECT to a proxy does
        # not: the tunnel is not the connection yet, the connect deadline still holds.
        attempt = deadlines.current.get() if "read_timeout" in params else None
        self._attempt = attempt
        if attempt is not None:
            attempt.protocol = self  # connected: the connect deadline no longer applies
            peer = self._peer
            if peer is None:
                peer = self._peer = _peer(self.transport)
            attempt.peer = peer
            sent = attempt.on_sent
            if sent is not None:
                attempt.on_sent = None
                sent()
        super().set_response_params(**params)

    def serves(self, attempt: Attempt) -> bool:
        return self._attempt is attempt

    def _reschedule_timeout(self) -> None:
        attempt = self._attempt
        if attempt is not None and attempt.protocol is self:
            attempt.last_read = self._loop.time()
            attempt.reading = True

    def _drop_timeout(self) -> None:
        attempt = self._attempt
        if attempt is not None and attempt.protocol is self:
            attempt.reading = False
        super()._drop_timeout()

    def read_timed_out(self) -> None:
        """Fail the request waiting on this connection as aiohttp's own between-reads
        timeout does (a ``ServerTimeoutError`` for the reader of headers or body)."""
        self._attempt = None
        self._on_read_timeout()


def _peer(transport: asyncio.BaseTransport | None) -> str | None:
    """``host:port`` of a connection's far end (``[host]:port`` for IPv6)."""
    address = None if transport is None else transport.get_extra_info("peername")
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _install(connector: aiohttp.BaseConnector, protocol: type[WatchedProtocol]) -> None:
    """Make ``connector`` open its connections with ``protocol``.

    aiohttp has no public hook for this; the connector's protocol factory is an internal
    attribute. The timeout and archive tests would fail if a change in aiohttp broke it.
    """
    if not hasattr(connector, "_factory"):
        raise RuntimeError("this aiohttp version offers no way to watch its connections")
    factory = functools.partial(protocol, loop=connector._loop)
    connector._factory = cast("functools.partial[ResponseHandler]", factory)


class CapturingProtocol(WatchedProtocol):
    """aiohttp's connection protocol, keeping a copy of each response's bytes."""

    _exchange: Exchange | None = None

    def set_response_params(self, **params: Any) -> None:
        capture = current_capture.get()
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
