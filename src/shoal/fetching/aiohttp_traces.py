"""The aiohttp trace hooks that fill in an archived attempt's exchanges (public aiohttp API
only; the transport is :mod:`shoal.fetching.aiohttp_transport`).

A hook records each exchange's request as aiohttp sent it (method, URL, headers, body), and
another reads a redirect's body to its end, so the archived redirect is whole. The request
is rebuilt from what aiohttp reports it sent (its request line and headers in order, and
the body).
"""

from __future__ import annotations

import contextvars
from types import SimpleNamespace

import aiohttp

from shoal.capture import Capture, Exchange

#: The capture of the attempt running in this task, if it archives its exchanges (read by
#: the connection protocol and the trace hooks, which run in the attempt's task).
current_capture: contextvars.ContextVar[Capture | None] = contextvars.ContextVar(
    "shoal_capture", default=None
)


def trace_config() -> aiohttp.TraceConfig:
    """The trace hooks that record each exchange's request and complete its redirects."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_headers_sent)
    config.on_request_chunk_sent.append(_chunk_sent)
    config.on_request_redirect.append(_redirect)
    return config


def _latest() -> Exchange | None:
    capture = current_capture.get()
    if capture is None or not capture.exchanges:
        return None
    return capture.exchanges[-1]


async def _headers_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    capture = current_capture.get()
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
    capture = current_capture.get()
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
