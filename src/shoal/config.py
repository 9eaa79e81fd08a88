"""Small frozen value classes that configure an engine. Each validates on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.errors import ConfigError
from shoal.result import ErrorKind

MiB = 1024 * 1024


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


DEFAULT_RETRY_ERRORS = frozenset({ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.RESET})
DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Which outcomes are retried, how often, and how long to wait between attempts.

    The wait before retry *n* (counting from 1) is drawn uniformly from
    ``[0, min(backoff_max_s, backoff_base_s * 2 ** (n - 1))]`` ("full jitter"). A
    ``Retry-After`` header on the response replaces that wait, capped at
    ``retry_after_max_s``; a longer Retry-After ends the retries for that request.
    """

    retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0
    on_errors: frozenset[ErrorKind] = field(default=DEFAULT_RETRY_ERRORS)
    on_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)

    def __post_init__(self) -> None:
        _at_least("retries", self.retries, 0)
        _at_least("backoff_base_s", self.backoff_base_s, 0)
        _at_least("backoff_max_s", self.backoff_max_s, 0)
        _at_least("retry_after_max_s", self.retry_after_max_s, 0)
        for status in self.on_statuses:
            if not 100 <= status <= 599:
                raise ConfigError("on_statuses", f"{status} is not an HTTP status code")
