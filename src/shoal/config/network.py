"""How an engine reaches servers: request headers, proxies, TLS, cookies and name lookups."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shoal.config.values import at_least
from shoal.errors import ConfigError
from shoal.version import __version__

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

#: The User-Agent a request carries unless :class:`Network` gives another.
DEFAULT_USER_AGENT = f"shoal/{__version__}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DNSSettings:
    """How host names are looked up (see :mod:`shoal.fetching.dns` and docs/network.md).

    ``servers`` are name servers as ``ADDRESS`` or ``ADDRESS:PORT`` (IPv6 as ``[ADDRESS]:PORT``)
    used instead of the system's. An answer is kept for its TTL, clamped to
    ``min_ttl_s``..``max_ttl_s``; a name that does not exist is remembered for
    ``negative_ttl_s``. At most ``max_lookups`` lookups run at once, each waiting
    ``timeout_s`` per try for ``tries`` tries; the cache holds at most ``max_names`` names
    (the least recently looked up go first). ``prefer_ipv6`` tries IPv6 addresses first.
    """

    servers: tuple[str, ...] = ()
    min_ttl_s: float = 60.0
    max_ttl_s: float = 3600.0
    negative_ttl_s: float = 30.0
    max_lookups: int = 64
    timeout_s: float = 2.0
    tries: int = 2
    max_names: int = 100_000
    prefer_ipv6: bool = False

    def __post_init__(self) -> None:
        at_least("min_ttl_s", self.min_ttl_s, 0)
        at_least("max_ttl_s", self.max_ttl_s, self.min_ttl_s)
        at_least("negative_ttl_s", self.negative_ttl_s, 0)
        at_least("max_lookups", self.max_lookups, 1)
        at_least("timeout_s", self.timeout_s, 0.001)
        at_least("tries", self.tries, 1)
        at_least("max_names", self.max_names, 1)
        for server in self.servers:
            check_name_server(server)


def check_name_server(server: str) -> tuple[str, int]:
    """``(address, port)`` of ``ADDRESS[:PORT]`` (``[V6]:PORT`` for IPv6 with a port)."""
    address, port = server, 53
    if server.startswith("["):
        address, _, rest = server[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError("servers", f"{server!r} is not ADDRESS[:PORT]")
            port = _port(server, rest[1:])
    elif server.count(":") == 1:
        address, _, text = server.partition(":")
        port = _port(server, text)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ConfigError("servers", f"{server!r} is not an IP address of a name server") from None
    return address, port


def _port(server: str, text: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise ConfigError("servers", f"{server!r} has no valid port")
    return int(text)


#: The transports :attr:`Network.transport` may name.
TRANSPORTS = ("aiohttp", "wire")


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """How requests reach their servers (see docs/network.md).

    ``headers`` go with every request (a ``User-Agent`` among them replaces
    ``user_agent``). ``proxy`` sends every request through that HTTP proxy (``""``: none);
    without it the ``http_proxy``/``https_proxy``/``no_proxy`` environment is honoured
    unless ``proxy_env`` is false. ``verify_tls=False`` accepts any certificate;
    ``ca_bundle`` (a PEM file) is trusted besides the system's roots. ``cookies`` keeps the
    cookies sites set and sends them back. ``resolve`` maps host names to addresses asked
    instead of DNS; ``dns`` is how other names are looked up. ``resolver`` (any aiohttp
    ``AbstractResolver``, the caller's to close) looks up every name instead of shoal's
    caching resolver (``dns`` then goes unused).
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    user_agent: str = DEFAULT_USER_AGENT
    proxy: str | None = None
    proxy_env: bool = True
    verify_tls: bool = True
    ca_bundle: str | None = None
    cookies: bool = False
    resolve: Mapping[str, str] = field(default_factory=dict)
    dns: DNSSettings = field(default_factory=lambda: DNSSettings())
    resolver: AbstractResolver | None = None
    #: What sends the requests: ``aiohttp`` (aiohttp's client), or ``wire`` (shoal's own
    #: HTTP/1.1 client: no proxies or cookies yet).
    transport: str = "aiohttp"

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError("transport", f"must be one of {', '.join(TRANSPORTS)}")
        if self.transport == "wire" and (self.cookies or self.proxy):
            what = "keeps no cookies" if self.cookies else "sends through no proxy"
            raise ConfigError(
                "transport", f"the wire transport {what} yet: use the aiohttp transport for that"
            )
        if isinstance(self.headers, str) or not isinstance(self.headers, Mapping):
            raise ConfigError("headers", "must be a mapping of header names to values")
        if not self.user_agent:
            raise ConfigError("user_agent", "must not be empty")
        if not isinstance(self.dns, DNSSettings):
            raise ConfigError("dns", "must be a DNSSettings")
