"""Building the one aiohttp session an engine uses for all its requests."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from shoal.fetching import capture, deadlines
from shoal.fetching.resolver import StaticResolver

#: Response header limits, set deliberately (aiohttp's own defaults are 8190 and 128).
MAX_HEADER_LINE_BYTES = 16 * 1024
MAX_HEADERS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    """What the session needs to know; the engine derives it from its options."""

    connections: int
    headers: Mapping[str, str] = field(default_factory=dict)
    verify_tls: bool = True
    resolve: Mapping[str, str] | None = None
    resolver: AbstractResolver | None = None
    #: Keep each exchange's bytes for the archive (see :mod:`shoal.fetching.capture`).
    capture: bool = False


def open_session(settings: SessionSettings) -> aiohttp.ClientSession:
    """A session tuned for bulk fetching.

    No cookie jar (every request stands alone, and the jar costs CPU per request), no
    silent resends (see below), no environment proxies, no pool wait (the scheduler
    already caps requests in flight, so the connector's limit is only a safety net), and
    no timeouts of aiohttp's: the three deadlines of an attempt (total, connect, between
    reads) are kept by the fetcher's watchdog (:mod:`shoal.fetching.deadlines`), whose
    protocol the connections use.
    """
    resolver = settings.resolver
    if settings.resolve:
        resolver = StaticResolver(settings.resolve, resolver or DefaultResolver())
    tls: ssl.SSLContext | bool = bool(settings.verify_tls)
    connector = aiohttp.TCPConnector(
        limit=settings.connections,
        limit_per_host=0,
        ssl=tls,
        resolver=resolver,
        ttl_dns_cache=300,
    )
    traces = []
    if settings.capture:
        deadlines.install(connector, capture.CapturingProtocol)
        traces.append(capture.trace_config())
    else:
        deadlines.install(connector, deadlines.WatchedProtocol)
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
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
    # It is an internal attribute of aiohttp; without it, nothing changes but the count.
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session
