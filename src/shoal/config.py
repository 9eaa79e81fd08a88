"""Small frozen value classes that configure an engine. Each validates on construction."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shoal.errors import ConfigError, ErrorKind

MiB = 1024 * 1024

#: Setting names (a :class:`ConfigError`'s ``option``, the fields of these classes and of
#: the settings a journal keeps) as the command line spells them, so that messages and the
#: report name what a user types.
OPTION_NAMES = {
    "concurrency": "--concurrency",
    "per_host": "--per-host",
    "max_bytes": "--max-bytes",
    "max_redirects": "--max-redirects",
    "total_s": "--timeout",
    "connect_s": "--connect-timeout",
    "read_s": "--read-timeout",
    "retries": "--retries",
    "backoff_base_s": "--backoff",
    "backoff_max_s": "--backoff-max",
    "retry_after_max_s": "--max-retry-after",
    "on_statuses": "--retry-on",
    "proxy": "--proxy",
    "ca_bundle": "--ca-bundle",
    "resolve": "--resolve",
    "servers": "--dns-server",
    "min_ttl_s": "--dns-min-ttl",
    "max_ttl_s": "--dns-max-ttl",
    "max_lookups": "--dns-concurrency",
    "per_second": "--per-host-rate",
    "burst": "--burst",
    "delay_s": "--delay",
    "jitter": "--jitter",
    "dead_after": "--dead-after",
    "dead_cooldown_s": "--dead-cooldown",
    "hosts": "--config",
    "warc": "--warc",
    "warc_max_size": "--warc-max-size",
    "dashboard": "--dashboard",
    "dashboard_token": "--dashboard-token",
    "max_depth": "--max-depth",
    "max_requests": "--max-requests",
    "scope": "--scope",
    "include": "--include",
    "exclude": "--exclude",
    "user_agent": "--user-agent",
    "headers": "--header",
    "fail_http": "--fail",
    "cookies": "--cookies",
    "output": "--output",
    "save_bodies": "--save-bodies",
    "on_errors": "--retry-on",
    "on_exceptions": "--retry-on",
    "adaptive": "--adaptive",
    "respect_robots": "--respect-robots",
    "robots_crawl_delay": "--robots-crawl-delay",
    "verify_tls": "--insecure",
    "proxy_env": "--no-proxy-env",
    "keep_headers": "--keep-headers",
}
#: The settings that are sizes in bytes (shown as ``50 MiB``, as ``--max-bytes 50MiB``).
SIZE_SETTINGS = frozenset({"max_bytes", "warc_max_size"})


def option_name(setting: str) -> str:
    """``max_bytes`` -> ``--max-bytes``; a setting no option sets keeps its own name."""
    return OPTION_NAMES.get(setting, setting)


def size_text(count: int) -> str:
    """A size exactly, in the largest binary unit that divides it: ``52428800`` ->
    ``50 MiB``; ``1536`` -> ``1,536 bytes`` (not a whole number of KiB)."""
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if count and count % scale == 0:
            return f"{count // scale:,} {unit}"
    return f"{count:,} bytes"


def _at_least(option: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ConfigError(option, f"must be at least {minimum:g}, got {value:g}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much work runs at once, and how much of each response is accepted.

    ``concurrency`` caps requests in flight over all hosts; ``per_host`` caps them per host
    name. ``max_bytes`` bounds a body after decompression; ``max_redirects`` bounds a chain.
    """

    concurrency: int = 100
    per_host: int = 8
    max_bytes: int = 50 * MiB
    max_redirects: int = 10

    def __post_init__(self) -> None:
        _at_least("concurrency", self.concurrency, 1)
        _at_least("per_host", self.per_host, 1)
        _at_least("max_bytes", self.max_bytes, 0)
        _at_least("max_redirects", self.max_redirects, 0)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Records:
    """What each JSON record holds besides the fields it always has.

    ``keep_headers`` names the response headers a record keeps in its ``headers`` object
    (matched without regard to case, kept under lower-case names), or is ``"all"`` for
    every header of the response; by default none, and records have no ``headers``.
    """

    keep_headers: tuple[str, ...] | Literal["all"] = ()

    def __post_init__(self) -> None:
        names = self.keep_headers
        if names == "all":
            return
        if isinstance(names, str) or not all(isinstance(name, str) for name in names):
            raise ConfigError("keep_headers", "must be header names or 'all'")
        for name in names:
            if not _HEADER_NAME.fullmatch(name):
                raise ConfigError("keep_headers", f"{name!r} is not a header name")
        lowered = tuple(dict.fromkeys(name.lower() for name in names))
        object.__setattr__(self, "keep_headers", lowered)

    def kept(self, headers: Mapping[str, str]) -> dict[str, str | list[str]] | None:
        """The record's ``headers`` object for a response's ``headers`` (a multidict:
        a header sent more than once keeps each value, in a list); ``None`` when no
        header is kept."""
        names = self.keep_headers
        if not names:
            return None
        kept: dict[str, str | list[str]] = {}
        for name, value in headers.items():
            key = name.lower()
            if names != "all" and key not in names:
                continue
            before = kept.get(key)
            if before is None:
                kept[key] = value
            elif isinstance(before, list):
                before.append(value)
            else:
                kept[key] = [before, value]
        return kept


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Per-attempt deadlines, in seconds.

    ``total_s`` bounds a whole attempt (connect, headers and body); ``connect_s`` bounds
    establishing the connection; ``read_s`` bounds each wait for data from the server.
    """

    total_s: float = 30.0
    connect_s: float = 10.0
    read_s: float = 10.0

    def __post_init__(self) -> None:
        _at_least("total_s", self.total_s, 0.001)
        _at_least("connect_s", self.connect_s, 0.001)
        _at_least("read_s", self.read_s, 0.001)


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
        _at_least("min_ttl_s", self.min_ttl_s, 0)
        _at_least("max_ttl_s", self.max_ttl_s, self.min_ttl_s)
        _at_least("negative_ttl_s", self.negative_ttl_s, 0)
        _at_least("max_lookups", self.max_lookups, 1)
        _at_least("timeout_s", self.timeout_s, 0.001)
        _at_least("tries", self.tries, 1)
        _at_least("max_names", self.max_names, 1)
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


#: A WARC file is rolled over to the next once it reaches this size (``--warc-max-size``).
DEFAULT_WARC_MAX_SIZE = 1024**3

DEFAULT_RETRY_ERRORS = frozenset({ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.RESET})
DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Which outcomes are retried, how often, and how long to wait between attempts.

    The wait before retry *n* (counting from 1) is drawn uniformly from
    ``[0, min(backoff_max_s, backoff_base_s * 2 ** (n - 1))]`` ("full jitter"). A
    ``Retry-After`` header on the response replaces that wait, capped at
    ``retry_after_max_s``; a longer Retry-After ends the retries for that request.

    For ``shoal.map``, an exception the coroutine raises is retried when it is an instance
    of one of ``on_exceptions`` (a ``Rejected(retry=True)`` always is); a call past its
    timeout fails with kind ``timeout``, which ``on_errors`` retries by default.
    """

    retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    on_errors: frozenset[ErrorKind] = field(default=DEFAULT_RETRY_ERRORS)
    on_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    on_exceptions: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        _at_least("retries", self.retries, 0)
        for kind in self.on_exceptions:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise ConfigError("on_exceptions", f"{kind!r} is not an exception class")
        _at_least("backoff_base_s", self.backoff_base_s, 0)
        _at_least("backoff_max_s", self.backoff_max_s, 0)
        _at_least("retry_after_max_s", self.retry_after_max_s, 0)
        for status in self.on_statuses:
            if not 100 <= status <= 599:
                raise ConfigError("on_statuses", f"{status} is not an HTTP status code")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPolicy:
    """Overrides for the hosts that match one pattern. ``None`` keeps the job's setting.

    ``max_in_flight`` caps requests in flight to one such host; ``per_second`` caps how
    often a request to it may start (a smooth limit that allows ``burst`` at once);
    ``delay_s`` is the least time between two starts, stretched by up to ``jitter`` (a
    fraction: 0.5 waits between 1 and 1.5 times the delay). ``timeouts`` and ``headers``
    apply to its requests (headers are added to the job's).
    """

    max_in_flight: int | None = None
    per_second: float | None = None
    burst: int | None = None
    delay_s: float | None = None
    jitter: float | None = None
    timeouts: Timeouts | None = None
    headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight is not None:
            _at_least("max_in_flight", self.max_in_flight, 1)
        if self.per_second is not None and self.per_second <= 0:
            raise ConfigError("per_second", f"must be more than 0, got {self.per_second:g}")
        if self.burst is not None:
            _at_least("burst", self.burst, 1)
        if self.delay_s is not None:
            _at_least("delay_s", self.delay_s, 0)
        if self.jitter is not None and not 0 <= self.jitter <= 1:
            raise ConfigError("jitter", f"must be between 0 and 1, got {self.jitter:g}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Politeness:
    """How hosts are spared: pacing, adaptive throttling, dead hosts, robots.txt.

    ``per_second``, ``burst``, ``delay_s`` and ``jitter`` apply to every host (see
    :class:`HostPolicy`); ``hosts`` maps host patterns to overrides: an exact name
    (``api.example.com``), a wildcard (``*.example.com``, which also matches
    ``example.com``) or ``*``. The most specific pattern that matches wins.

    ``adaptive`` slows a host down on 429 and 503 answers, timeouts and rising time to
    first byte, and speeds it up again slowly on success. A ``Retry-After`` on a 429 or
    503 pauses that host (and only it) for that long, at most ``retry_after_max_s`` of the
    retry policy. These are a host name's, whatever the port. After ``dead_after``
    consecutive connection failures an endpoint (scheme, host and port: the host's other
    ports go on) is parked for ``dead_cooldown_s`` (doubling on each failed probe); after
    ``dead_probes`` failed probes its remaining requests fail without being sent.
    ``dead_after=0`` never parks.

    ``respect_robots`` fetches each host's robots.txt once and fails the requests it
    disallows (error kind ``robots``); ``robots_crawl_delay`` also honours its
    ``Crawl-delay`` as the host's least delay, up to ``crawl_delay_max_s``.
    """

    per_second: float | None = None
    burst: int = 1
    delay_s: float = 0.0
    jitter: float = 0.0
    adaptive: bool = False
    dead_after: int = 5
    dead_cooldown_s: float = 30.0
    dead_probes: int = 3
    respect_robots: bool = False
    robots_crawl_delay: bool = False
    crawl_delay_max_s: float = 60.0
    hosts: Mapping[str, HostPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        HostPolicy(per_second=self.per_second, burst=self.burst, delay_s=self.delay_s)
        if not 0 <= self.jitter <= 1:
            raise ConfigError("jitter", f"must be between 0 and 1, got {self.jitter:g}")
        _at_least("dead_after", self.dead_after, 0)
        _at_least("dead_cooldown_s", self.dead_cooldown_s, 0.001)
        _at_least("dead_probes", self.dead_probes, 1)
        _at_least("crawl_delay_max_s", self.crawl_delay_max_s, 0)
        for pattern in self.hosts:
            check_host_pattern(pattern)


#: The scopes a crawl's follow-ups may be kept to, against the page that gave them.
SCOPES = ("same-host", "same-domain", "same-origin", "all")


@dataclass(frozen=True, slots=True, kw_only=True)
class Crawl:
    """Which follow-ups (:meth:`shoal.Result.follow`) a job admits.

    ``max_depth`` bounds the links between the input and a request (``None``: no bound);
    ``max_requests`` stops admitting follow-ups once the job holds that many requests in
    all (the input's included). ``scope`` keeps a follow-up to the page that gave it:
    ``same-host`` (the same host name and port; ``http`` and ``https`` on their default
    ports count as one), ``same-domain`` (the same registrable domain, by
    the public suffix list), ``same-origin`` (scheme, host and port) or ``all``.
    ``include`` and ``exclude`` are regular expressions searched in the absolute URL: with
    any ``include``, one must match; no ``exclude`` may.
    """

    max_depth: int | None = None
    max_requests: int | None = None
    scope: str = "same-host"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_depth is not None:
            _at_least("max_depth", self.max_depth, 0)
        if self.max_requests is not None:
            _at_least("max_requests", self.max_requests, 1)
        if self.scope not in SCOPES:
            raise ConfigError("scope", f"{self.scope!r} is not one of {', '.join(SCOPES)}")
        for option in ("include", "exclude"):
            patterns = getattr(self, option)
            if isinstance(patterns, str):
                raise ConfigError(option, "give a list of patterns, not one string")
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    problem = f"{pattern!r} is not a regular expression: {exc}"
                    raise ConfigError(option, problem) from exc


def check_host_pattern(pattern: str) -> str:
    """A host pattern, lower-cased: ``name``, ``*.name`` or ``*``; else a ConfigError."""
    text = pattern.strip().lower()
    name = text[2:] if text.startswith("*.") else text
    with_port = name.count(":") == 1  # "host:port"; an IPv6 address has several colons
    if text != "*" and (not name or with_port or any(c in name for c in "*/ @")):
        raise ConfigError("hosts", f"{pattern!r} is not a host name, '*.domain' or '*'")
    if not name.isascii():
        try:
            return ("*." if text.startswith("*.") else "") + name.encode("idna").decode()
        except UnicodeError as exc:
            raise ConfigError("hosts", f"{pattern!r} is not a valid host name") from exc
    return text


def plain(value: object) -> Any:
    """A configuration as JSON-ready data: value classes as objects of their fields, sets
    sorted, error kinds by name. Kept in the journal for ``shoal report``, which may be
    shared, so ``headers`` keep only their names (their values may carry credentials)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: (
                _header_names(getattr(value, item.name))
                if item.name == "headers"
                else plain(getattr(value, item.name))
            )
            for item in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in sorted(value.items())}
    if isinstance(value, set | frozenset):
        return sorted(plain(item) for item in value)
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _header_names(headers: Mapping[str, str] | None) -> list[str] | None:
    return None if headers is None else sorted(headers)
