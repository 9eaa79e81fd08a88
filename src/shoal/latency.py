"""Latency histograms: log-bucketed, constant memory, percentiles within a few percent.

Shared by the run's statistics (request latency) and the resolver (lookup latency).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

_BUCKETS_PER_E = 40  # about 2.5% relative resolution


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles in milliseconds over the finished requests of a run."""

    count: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


class LatencyHistogram:
    """A log-bucketed histogram: constant memory, percentiles within a few percent."""

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        self._counts[int(math.log1p(ms) * _BUCKETS_PER_E)] += 1
        self.count += 1
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, fraction: float) -> float | None:
        return _percentile(self._counts, self.count, self.max_ms, fraction)

    def buckets(self) -> Mapping[int, int]:
        return MappingProxyType(dict(self._counts))

    def snapshot(self) -> Latency:
        return latency_from(self._counts, self.max_ms)


def bucket_range(bucket: int) -> tuple[float, float]:
    """The latencies (ms) one bucket of :meth:`LatencyHistogram.buckets` counts: from the
    first up to the second (a chart of the histogram draws its bars there)."""
    return math.expm1(bucket / _BUCKETS_PER_E), math.expm1((bucket + 1) / _BUCKETS_PER_E)


def _percentile(
    counts: Mapping[int, int], count: int, max_ms: float, fraction: float
) -> float | None:
    if not count:
        return None
    rank = fraction * count
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return min(max_ms, math.expm1((bucket + 0.5) / _BUCKETS_PER_E))
    return max_ms


def latency_from(counts: Mapping[int, int], max_ms: float) -> Latency:
    """Percentiles from histogram bucket counts (also merged ones from several runs)."""
    count = sum(counts.values())
    if not count:
        return Latency()
    return Latency(
        count,
        _percentile(counts, count, max_ms, 0.50),
        _percentile(counts, count, max_ms, 0.90),
        _percentile(counts, count, max_ms, 0.99),
        max_ms,
    )
