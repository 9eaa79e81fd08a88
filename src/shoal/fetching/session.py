"""What the transport's session is opened with (:class:`SessionSettings`), and the TLS
roots it trusts; the session itself is the transport's (see
:mod:`shoal.fetching.aiohttp_transport`)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver

from shoal.errors import ConfigError

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
    #: Keep each exchange's bytes for the archive (see :mod:`shoal.capture`).
    capture: bool = False
    #: Keep the cookies sites set, one bounded jar per site (see :mod:`shoal.fetching.cookies`).
    cookies: bool = False
    #: Which transport sends the requests (``shoal.config.Network.transport``).
    transport: str = "aiohttp"


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
