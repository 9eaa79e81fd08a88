"""Counters and latency histograms, read as immutable :class:`Statistics` snapshots.

The engine owns one :class:`Recorder`; everything that shows progress (the progress bar,
the summary, later a dashboard or metrics endpoint) reads snapshots of it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from shoal.result import Result

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
        if not self.count:
            return None
        rank = fraction * self.count
        seen = 0
        for bucket in sorted(self._counts):
            seen += self._counts[bucket]
            if seen >= rank:
                return min(self.max_ms, math.expm1((bucket + 0.5) / _BUCKETS_PER_E))
        return self.max_ms

    def snapshot(self) -> Latency:
        if not self.count:
            return Latency()
        return Latency(
            self.count,
            self.percentile(0.50),
            self.percentile(0.90),
            self.percentile(0.99),
            self.max_ms,
        )


@dataclass(frozen=True, slots=True)
class Statistics:
    """A point-in-time view of a run. Counts are for this run unless named ``job_*``.

    ``total`` is the number of requests the job holds once the input is read to the end;
    before that it is an estimate (``total_is_estimate``) or ``None``.
    """

    elapsed_s: float
    total: int | None
    total_is_estimate: bool
    done: int
    ok: int
    failed: int
    skipped: int
    duplicates: int
    retries: int
    in_flight: int
    queued: int
    waiting_retry: int
    bytes: int
    by_status: Mapping[str, int]
    by_error: Mapping[str, int]
    latency: Latency
    job_ok: int
    job_failed: int
    interrupted: bool

    @property
    def requests_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def remaining(self) -> int | None:
        if self.total is None:
            return None
        return max(0, self.total - self.skipped - self.done)

    @property
    def eta_s(self) -> float | None:
        remaining = self.remaining
        rate = self.requests_per_s
        if remaining is None or rate <= 0:
            return None
        return remaining / rate


class Recorder:
    """The mutable counters behind :class:`Statistics`; fed by the engine."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._finished: float | None = None
        self.total: int | None = None
        self.total_is_estimate = False
        self.done = 0
        self.ok = 0
        self.failed = 0
        self.skipped = 0
        self.duplicates = 0
        self.retries = 0
        self.bytes = 0
        self.job_ok = 0
        self.job_failed = 0
        self.interrupted = False
        self._by_status: Counter[str] = Counter()
        self._by_error: Counter[str] = Counter()
        self._latency = LatencyHistogram()

    def start(self) -> None:
        self._started = time.monotonic()
        self._finished = None

    def finish(self) -> None:
        self._finished = time.monotonic()

    def add(self, result: Result) -> None:
        """Count a committed result."""
        self.done += 1
        self.bytes += result.bytes
        if result.status is not None:
            self._by_status[f"{result.status // 100}xx"] += 1
        error = result.error
        if error is None:
            self.ok += 1
        else:
            self.failed += 1
            self._by_error[error.kind.value] += 1
        if result.elapsed_ms is not None:
            self._latency.add(result.elapsed_ms)

    def snapshot(
        self, *, in_flight: int = 0, queued: int = 0, waiting_retry: int = 0
    ) -> Statistics:
        end = self._finished if self._finished is not None else time.monotonic()
        return Statistics(
            elapsed_s=end - self._started,
            total=self.total,
            total_is_estimate=self.total_is_estimate,
            done=self.done,
            ok=self.ok,
            failed=self.failed,
            skipped=self.skipped,
            duplicates=self.duplicates,
            retries=self.retries,
            in_flight=in_flight,
            queued=queued,
            waiting_retry=waiting_retry,
            bytes=self.bytes,
            by_status=MappingProxyType(dict(self._by_status)),
            by_error=MappingProxyType(dict(self._by_error)),
            latency=self._latency.snapshot(),
            job_ok=self.job_ok,
            job_failed=self.job_failed,
            interrupted=self.interrupted,
        )
