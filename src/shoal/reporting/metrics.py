"""Prometheus metrics over :class:`~shoal.reporting.statistics.Statistics` snapshots.

One custom collector reads a fresh snapshot per scrape, so metrics cost nothing between
scrapes and can never disagree with the progress line. Names follow Prometheus' naming
rules and the HTTP client conventions of OpenTelemetry (durations in seconds, bytes in
bytes, ``_total`` counters). No label carries a host name: the number of series stays
fixed whatever the job.

Counters are the run's (they start at zero with each run of the process, as Prometheus
expects of a restarted target); the job's own totals across resumes are gauges.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shoal.reporting.statistics import Statistics
from shoal.version import __version__

#: The request-duration histogram's upper bounds, in seconds.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Host states a snapshot can name (``ok`` hosts are not listed in snapshots).
HOST_STATES = ("paused", "parked", "probing", "slowed", "dead")
#: The latency histogram's resolution (see :mod:`shoal.latency`): buckets per e.
_PER_E = 40


class StatisticsCollector(Collector):
    """Collects the metrics of ``snapshot()`` (an engine's ``statistics``, say)."""

    def __init__(self, snapshot: Callable[[], Statistics]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats = self._snapshot()
        requests = CounterMetricFamily(
            "shoal_requests",
            "Final results of this run, by outcome and response status class",
            labels=("outcome", "status_class"),
        )
        for key, count in sorted(stats.by_outcome.items()):
            outcome, _, status_class = key.partition("/")
            requests.add_metric((outcome, status_class), count)
        yield requests
        errors = CounterMetricFamily(
            "shoal_request_errors", "Failed requests of this run, by error kind", labels=("kind",)
        )
        for kind, count in sorted(stats.by_error.items()):
            errors.add_metric((kind,), count)
        yield errors
        yield _duration(stats)
        yield CounterMetricFamily(
            "shoal_response_body_bytes", "Body bytes received (decoded)", value=stats.bytes
        )
        yield CounterMetricFamily("shoal_retries", "Attempts retried", value=stats.retries)
        yield CounterMetricFamily(
            "shoal_duplicates", "Input requests dropped as duplicates", value=stats.duplicates
        )
        links = CounterMetricFamily(
            "shoal_links",
            "Follow-ups handlers asked for, by what became of them (admitted, duplicate, "
            "out_of_scope, excluded, too_deep, over_budget, invalid)",
            labels=("outcome",),
        )
        for outcome, count in stats.links.to_dict().items():
            if outcome != "found":
                links.add_metric((outcome,), count)
        yield links
        yield CounterMetricFamily(
            "shoal_skipped", "Requests already final in the journal", value=stats.skipped
        )
        yield GaugeMetricFamily(
            "shoal_requests_in_flight", "Requests being sent or received", value=stats.in_flight
        )
        yield GaugeMetricFamily(
            "shoal_requests_pending",
            "Requests admitted and not final: queued or waiting to retry",
            value=stats.queued + stats.waiting_retry,
        )
        yield GaugeMetricFamily(
            "shoal_requests_waiting_retry",
            "Requests waiting out a backoff",
            value=stats.waiting_retry,
        )
        remaining = stats.remaining
        yield GaugeMetricFamily(
            "shoal_job_requests",
            "Requests the job holds (an estimate until the input is read to its end)",
            value=math.nan if stats.total is None else stats.total,
        )
        yield GaugeMetricFamily(
            "shoal_job_requests_remaining",
            "Requests of the job not yet final",
            value=math.nan if remaining is None else remaining,
        )
        hosts = GaugeMetricFamily(
            "shoal_hosts", "Hosts in a state other than ok (at most 50 listed)", labels=("state",)
        )
        states = Counter(host.state for host in stats.hosts)
        for state in HOST_STATES:
            hosts.add_metric((state,), states.get(state, 0))
        yield hosts
        yield GaugeMetricFamily("shoal_paused", "1 while the run is paused", value=stats.paused)
        yield GaugeMetricFamily(
            "shoal_job_workers",
            "Workers running the job now, this one included (a job on a shared store; 0"
            " for a job of this run alone)",
            value=len(stats.workers),
        )
        yield GaugeMetricFamily(
            "shoal_last_progress_timestamp_seconds",
            "When the last result was counted (Unix time; 0 before the first)",
            value=stats.last_progress_at or 0.0,
        )
        yield CounterMetricFamily("shoal_dns_lookups", "Names looked up", value=stats.dns.lookups)
        info = GaugeMetricFamily("shoal_build_info", "shoal's version", labels=("version",))
        info.add_metric((__version__,), 1)
        yield info


def _duration(stats: Statistics) -> HistogramMetricFamily:
    """The request durations as cumulative buckets, from the log-bucketed histogram: a
    bucket counts into a bound when its whole range is below it, so each bound is exact to
    the histogram's 2.5%; the sum is estimated from the buckets' midpoints likewise."""
    counts = stats.latency_buckets
    cumulative = []
    total_ms = 0.0
    for bucket, count in counts.items():
        total_ms += count * math.expm1((bucket + 0.5) / _PER_E)
    for bound_s in DURATION_BUCKETS_S:
        below = sum(
            count
            for bucket, count in counts.items()
            if math.expm1((bucket + 1) / _PER_E) <= bound_s * 1000
        )
        cumulative.append((_bound(bound_s), float(below)))
    cumulative.append(("+Inf", float(sum(counts.values()))))
    return HistogramMetricFamily(
        "shoal_request_duration_seconds",
        "Duration of each final attempt, from sending to the body's end",
        buckets=cumulative,
        sum_value=total_ms / 1000,
    )


def _bound(seconds: float) -> str:
    return repr(float(seconds))


def exposition(snapshot: Callable[[], Statistics]) -> bytes:
    """The metrics of ``snapshot()`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatisticsCollector(snapshot))
    return generate_latest(registry)
