"""Which outcomes are retried and how long to wait: exponential backoff with full jitter,
replaced by the server's ``Retry-After`` when it gives one (capped)."""

from __future__ import annotations

import email.utils
import random
import time

from shoal.config import RetryPolicy
from shoal.outcome import Finished
from shoal.result import Result


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_delay(policy: RetryPolicy, result: Finished, rng: random.Random) -> float | None:
    """The wait before the next attempt, or ``None`` when the result is final.

    ``result.attempts`` counts the attempts made so far.
    """
    if result.attempts > policy.retries:
        return None
    error = result.error
    response = result if isinstance(result, Result) else None  # (a call has no status)
    if response is not None and response.status in policy.on_statuses:
        pass
    elif error is None or not (error.retry or error.kind in policy.on_errors):
        return None
    if response is not None and response.headers is not None:
        after = parse_retry_after(response.headers.get("Retry-After"))
        if after is not None:
            return after if after <= policy.retry_after_max_s else None
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (result.attempts - 1))
    return rng.uniform(0.0, ceiling)
