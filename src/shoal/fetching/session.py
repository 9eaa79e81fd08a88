"""Building the one aiohttp session an engine uses for all its requests."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp.abc import AbstractResolver

from shoal.errors import ConfigError
from shoal.fetching import capture, deadlines
from shoal.fetching.cookies import SiteCookieJar
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
    #: The roots to verify against when ``verify_tls`` (see :func:`trust_context`); ``None``:
    #: the system's.
    tls_context: ssl.SSLContext | None = None
    resolve: Mapping[str, str] | None = None
    resolver: AbstractResolver | None = None
    #: Keep each exchange's bytes for the archive (see :mod:`shoal.fetching.capture`).
    capture: bool = False
    #: Keep the cookies sites set, one bounded jar per site (see :mod:`shoal.fetching.cookies`).
    cookies: bool = False


def trust_context(ca_bundle: str) -> ssl.SSLContext:
    """A verifying TLS context that trusts the CA certificates in ``ca_bundle`` (a PEM file)
    as well as the system's roots. An unreadable file, or one without a certificate, is a
    :class:`ConfigError` of ``ca_bundle``."""
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca_bundle)
    except ssl.SSLError as exc:
        if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND":
            problem = "holds no PEM certificate"
        else:
            problem = f"is not a valid PEM file of CA certificates ({exc.reason or exc})"
        raise ConfigError("ca_bundle", f"{ca_bundle} {problem}") from exc
    except OSError as exc:
        raise ConfigError("ca_bundle", f"cannot read {ca_bundle}: {exc.strerror}") from exc
    return context


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
        deadlines.install(connector, capture.CapturingProtocol)
        traces.append(capture.trace_config())
    else:
        deadlines.install(connector, deadlines.WatchedProtocol)
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
    # It is an internal attribute of aiohttp; without it, nothing changes but the count.
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session
