"""Retry-After parsing and the retry decision: which outcomes retry, and how long to wait."""

from __future__ import annotations

import email.utils
import random
import time

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shoal.config import RetryPolicy
from shoal.result import Error, ErrorKind, Result
from shoal.scheduling import parse_retry_after, retry_delay

NOW = 1_700_000_000.0


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def result(
    *,
    attempts: int = 1,
    status: int | None = None,
    error: Error | None = None,
    retry_after: str | None = None,
) -> Result:
    headers = None
    if retry_after is not None:
        headers = CIMultiDictProxy(CIMultiDict({"Retry-After": retry_after}))
    return Result(
        url="http://a.test/", status=status, error=error, attempts=attempts, headers=headers
    )


def delay(outcome: Result, policy: RetryPolicy | None = None, seed: int = 0) -> float | None:
    return retry_delay(policy or RetryPolicy(), outcome, random.Random(seed))


# -- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 7 ", 7.0), ("86400", 86400.0)],
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_http_date() -> None:
    assert parse_retry_after(http_date(NOW + 30), now=NOW) == pytest.approx(30.0)
    assert http_date(NOW) == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:20 GMT", now=NOW) == 0.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:14:20 +0000", now=NOW) == 60.0
    assert parse_retry_after("Tue, 14 Nov 2023 23:15:20 +0100", now=NOW) == 120.0


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert parse_retry_after(http_date(NOW - 3600), now=NOW) == 0.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now=NOW) == 0.0


def test_retry_after_date_uses_the_clock_by_default() -> None:
    parsed = parse_retry_after(http_date(time.time() + 100))
    assert parsed is not None
    assert 95 <= parsed <= 101


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",
        "1.5",
        "1e3",
        "0x10",
        "Mon, 99 Foo 2015 99:99:99 GMT",
        "Wed, 21 Oct 2015 07:28:00",  # no zone: ambiguous, ignored
        "Wed, 21 Oct 2015 07:28:00 -0000",  # "unknown zone" per RFC 5322
    ],
)
def test_retry_after_junk_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_retry_after_unicode_digit_is_junk_not_a_crash() -> None:
    assert parse_retry_after("²", now=NOW) is None


# -- retry_delay: when to retry ---------------------------------------------------------------


@pytest.mark.parametrize("kind", [ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.RESET])
def test_default_error_kinds_are_retried(kind: ErrorKind) -> None:
    assert delay(result(error=Error(kind, "x"))) is not None


@pytest.mark.parametrize(
    "kind",
    [
        ErrorKind.DNS,
        ErrorKind.TLS,
        ErrorKind.PROTOCOL,
        ErrorKind.TOO_LARGE,
        ErrorKind.INVALID_URL,
        ErrorKind.HANDLER,
        ErrorKind.HTTP_STATUS,
    ],
)
def test_other_error_kinds_are_final(kind: ErrorKind) -> None:
    assert delay(result(error=Error(kind, "x"))) is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_default_statuses_are_retried(status: int) -> None:
    assert delay(result(status=status)) is not None
    # Also when the status was turned into an http_status error (fail_http).
    assert delay(result(status=status, error=Error(ErrorKind.HTTP_STATUS, "x"))) is not None


@pytest.mark.parametrize("status", [200, 204, 301, 404, 501])
def test_other_statuses_are_final(status: int) -> None:
    assert delay(result(status=status)) is None


def test_policy_lists_decide() -> None:
    policy = RetryPolicy(on_errors=frozenset({ErrorKind.DNS}), on_statuses=frozenset({404}))
    assert delay(result(error=Error(ErrorKind.DNS, "x")), policy) is not None
    assert delay(result(error=Error(ErrorKind.TIMEOUT, "x")), policy) is None
    assert delay(result(status=404), policy) is not None
    assert delay(result(status=503), policy) is None


def test_handler_error_asking_for_retry() -> None:
    asks = Error(ErrorKind.HANDLER, "try again", retry=True)
    plain = Error(ErrorKind.HANDLER, "no")
    assert delay(result(status=200, error=asks)) is not None
    assert delay(result(status=200, error=plain)) is None


def test_retries_are_exhausted_after_policy_retries() -> None:
    policy = RetryPolicy(retries=2)
    error = Error(ErrorKind.RESET, "x")
    assert delay(result(attempts=1, error=error), policy) is not None
    assert delay(result(attempts=2, error=error), policy) is not None
    assert delay(result(attempts=3, error=error), policy) is None
    assert (
        delay(result(attempts=3, error=Error(ErrorKind.HANDLER, "x", retry=True)), policy) is None
    )


def test_zero_retries_never_retry() -> None:
    assert delay(result(attempts=1, status=503), RetryPolicy(retries=0)) is None


# -- retry_delay: how long --------------------------------------------------------------------


def test_retry_after_replaces_the_backoff() -> None:
    assert delay(result(status=429, retry_after="7")) == 7.0
    assert delay(result(status=503, retry_after="0")) == 0.0


def test_retry_after_date_is_honoured() -> None:
    waited = delay(result(status=503, retry_after=http_date(time.time() + 60)))
    assert waited is not None
    assert 55 <= waited <= 61


def test_retry_after_over_the_cap_ends_the_retries() -> None:
    policy = RetryPolicy(retry_after_max_s=10)
    assert delay(result(status=429, retry_after="10"), policy) == 10.0
    assert delay(result(status=429, retry_after="11"), policy) is None


def test_junk_retry_after_falls_back_to_the_backoff() -> None:
    policy = RetryPolicy(backoff_base_s=1, backoff_max_s=1)
    waited = delay(result(status=503, retry_after="later"), policy)
    assert waited is not None
    assert 0 <= waited <= 1


def test_retry_after_on_a_final_outcome_is_ignored() -> None:
    assert delay(result(status=200, retry_after="5")) is None
    assert delay(result(status=404, retry_after="5")) is None


def test_retry_after_on_an_exhausted_request_is_ignored() -> None:
    assert delay(result(attempts=3, status=429, retry_after="1"), RetryPolicy(retries=2)) is None


def test_full_jitter_matches_the_seeded_generator() -> None:
    policy = RetryPolicy(retries=10, backoff_base_s=0.5, backoff_max_s=30)
    for attempts in range(1, 8):
        ceiling = min(30.0, 0.5 * 2 ** (attempts - 1))
        expected = random.Random(attempts).uniform(0.0, ceiling)
        assert delay(result(attempts=attempts, status=503), policy, seed=attempts) == expected


@pytest.mark.parametrize(
    ("attempts", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (6, 16.0), (7, 20.0)]
)
def test_full_jitter_bounds(attempts: int, ceiling: float) -> None:
    policy = RetryPolicy(retries=10, backoff_base_s=0.5, backoff_max_s=20)
    rng = random.Random(1234)
    outcome = result(attempts=attempts, error=Error(ErrorKind.TIMEOUT, "x"))
    waits = []
    for _ in range(500):
        waited = retry_delay(policy, outcome, rng)
        assert waited is not None
        waits.append(waited)
    assert all(0.0 <= waited <= ceiling for waited in waits)
    # Full jitter spreads over the whole range, not only near the ceiling.
    assert min(waits) < ceiling * 0.1
    assert max(waits) > ceiling * 0.9


def test_zero_backoff_retries_at_once() -> None:
    policy = RetryPolicy(backoff_base_s=0, backoff_max_s=0)
    assert delay(result(status=503), policy) == 0.0
