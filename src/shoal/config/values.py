"""Small frozen value classes that configure an engine. Each validates on construction."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from shoal.errors import ConfigError, ErrorKind

MiB = 1024 * 1024


def at_least(option: str, value: float, minimum: float) -> None:
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
        at_least("concurrency", self.concurrency, 1)
        at_least("per_host", self.per_host, 1)
        at_least("max_bytes", self.max_bytes, 0)
        at_least("max_redirects", self.max_redirects, 0)


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
        at_least("total_s", self.total_s, 0.001)
        at_least("connect_s", self.connect_s, 0.001)
        at_least("read_s", self.read_s, 0.001)


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

    ``seed`` seeds the engine's random numbers (this jitter, and the per-host delays'
    ``Politeness.jitter``), so that a run's waits can be replayed; ``None``: unseeded.
    """

    retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    on_errors: frozenset[ErrorKind] = field(default=DEFAULT_RETRY_ERRORS)
    on_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    on_exceptions: tuple[type[BaseException], ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        at_least("retries", self.retries, 0)
        for kind in self.on_exceptions:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise ConfigError("on_exceptions", f"{kind!r} is not an exception class")
        at_least("backoff_base_s", self.backoff_base_s, 0)
        at_least("backoff_max_s", self.backoff_max_s, 0)
        at_least("retry_after_max_s", self.retry_after_max_s, 0)
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
            at_least("max_in_flight", self.max_in_flight, 1)
        if self.per_second is not None and self.per_second <= 0:
            raise ConfigError("per_second", f"must be more than 0, got {self.per_second:g}")
        if self.burst is not None:
            at_least("burst", self.burst, 1)
        if self.delay_s is not None:
            at_least("delay_s", self.delay_s, 0)
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
        at_least("dead_after", self.dead_after, 0)
        at_least("dead_cooldown_s", self.dead_cooldown_s, 0.001)
        at_least("dead_probes", self.dead_probes, 1)
        at_least("crawl_delay_max_s", self.crawl_delay_max_s, 0)
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
            at_least("max_depth", self.max_depth, 0)
        if self.max_requests is not None:
            at_least("max_requests", self.max_requests, 1)
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


#: Keywords the engine took once, and the value class's field that holds each now.
MOVED_KEYWORDS = {
    "keep_body": "outputs=Outputs(keep_body=...)",
    "resolver": "network=Network(resolver=...)",
    "seed": "retry=RetryPolicy(seed=...)",
}


def moved_keyword(owner: str, name: str) -> TypeError:
    """The error for a keyword ``owner`` does not take: where it went, if it moved."""
    place = MOVED_KEYWORDS.get(name)
    if place is None:
        return TypeError(f"{owner}() got an unexpected keyword argument {name!r}")
    return TypeError(f"{owner}() takes no {name!r} any more: pass {place}")
