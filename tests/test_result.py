"""The record's timestamp: the same text as datetime's ISO form, at every rounding edge."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from shoal.result import Result


def _started_at(timestamp: float) -> str:
    record = Result(url="http://127.0.0.1/", started_at=timestamp).to_record()
    value = record["started_at"]
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize(
    "timestamp",
    [
        0.0,
        1.5,
        1_700_000_000.0,
        1_700_000_000.0004995,  # rounds down to .000
        1_700_000_000.0009995,  # rounds up to .001 at the microsecond
        1_700_000_000.9999996,  # carries into the next second
        1_700_000_059.9999999,  # and into the next minute
        1_704_067_199.9999999,  # and into the next year
    ],
)
def test_started_at_matches_isoformat_at_the_edges(timestamp: float) -> None:
    expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    assert _started_at(timestamp) == expected


def test_started_at_matches_isoformat_over_many_times() -> None:
    rng = random.Random(20261201)
    for _ in range(20_000):
        timestamp = rng.uniform(0, 4e9)
        expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
        assert _started_at(timestamp) == expected
