"""Counters and latency histograms, read as immutable :class:`Statistics` snapshots.

The engine owns one :class:`Recorder`; everything that shows progress (the progress bar,
the summary, the dashboard and its metrics) reads snapshots of it.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

from shoal.crawling.frontier import LinkCounts
from shoal.fetching.dns import DNSStatistics
from shoal.latency import Latency, LatencyHistogram, latency_from
from shoal.outcome import Finished, Outcome
from shoal.result import Result
from shoal.scheduling.hosts import HostState
from shoal.store.store import WorkerState

#: How many of the latest failures a snapshot keeps of each error kind.
RECENT_PER_KIND = 5
#: The most of a URL or message a sample keeps (a snapshot stays small).
_SHOWN = 300


@dataclass(frozen=True, slots=True)
class ErrorSample:
    """One recent final failure: its kind, request, message and when (epoch seconds)."""

    kind: str
    url: str
    message: str
    at: float


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
    #: The latency histogram behind ``latency`` (log buckets), so snapshots can be merged.
    latency_buckets: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    #: The hosts that are paused, parked, slowed down or given up, by name (at most 50).
    hosts: tuple[HostState, ...] = ()
    #: The resolver's lookups during the run (zeros when the caller brought a resolver).
    dns: DNSStatistics = field(default_factory=DNSStatistics)
    #: Whether the run is paused (:meth:`shoal.Engine.pause`): no new request starts.
    paused: bool = False
    #: Final results by outcome and status class: ``"ok/2xx"``, ``"failed/none"`` (no
    #: response), ``"failed/5xx"`` …
    by_outcome: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: When the last result was counted (seconds since the epoch), if any was.
    last_progress_at: float | None = None
    #: The latest final failures, newest first: at most ``RECENT_PER_KIND`` of each kind.
    recent_errors: tuple[ErrorSample, ...] = ()
    #: Whether the run has ended (to its end, or stopped: see ``interrupted``).
    finished: bool = False
    #: What became of the follow-ups handlers asked for (:meth:`shoal.Result.follow`).
    links: LinkCounts = field(default_factory=LinkCounts)
    #: What the job's work is called: ``request`` (a fetch or crawl), ``item`` (a map).
    unit: str = "request"
    #: The workers of a shared job running now, as its store last saw them (else none).
    workers: tuple[WorkerState, ...] = ()

    def __str__(self) -> str:
        """A few readable lines (``print(engine.statistics())``), as the summary has them;
        ``repr`` keeps every field."""
        from shoal.reporting.summary import render_summary  # (it reads this module)

        return render_summary(self, title="shoal statistics", live=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``from_dict`` reads it back)."""
        data = {name: getattr(self, name) for name in _PLAIN_FIELDS}
        data["by_status"] = dict(self.by_status)
        data["by_error"] = dict(self.by_error)
        data["latency_max_ms"] = self.latency.max_ms
        data["latency_buckets"] = sorted(self.latency_buckets.items())
        data["hosts"] = [dataclasses.asdict(host) for host in self.hosts]
        data["dns"] = self.dns.to_dict()
        data["paused"] = self.paused
        data["by_outcome"] = dict(self.by_outcome)
        data["last_progress_at"] = self.last_progress_at
        data["recent_errors"] = [dataclasses.asdict(sample) for sample in self.recent_errors]
        data["finished"] = self.finished
        data["links"] = self.links.to_dict()
        data["unit"] = self.unit
        data["workers"] = [dataclasses.asdict(worker) for worker in self.workers]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Statistics:
        buckets = {int(bucket): int(count) for bucket, count in data["latency_buckets"]}
        return cls(
            **{name: data[name] for name in _PLAIN_FIELDS},
            by_status=MappingProxyType(dict(data["by_status"])),
            by_error=MappingProxyType(dict(data["by_error"])),
            latency=latency_from(buckets, data["latency_max_ms"] or 0.0),
            latency_buckets=MappingProxyType(buckets),
            hosts=tuple(HostState(**host) for host in data.get("hosts", ())),
            dns=DNSStatistics.from_dict(data["dns"]) if "dns" in data else DNSStatistics(),
            paused=bool(data.get("paused", False)),
            by_outcome=MappingProxyType(dict(data.get("by_outcome", {}))),
            last_progress_at=data.get("last_progress_at"),
            recent_errors=tuple(ErrorSample(**e) for e in data.get("recent_errors", ())),
            finished=bool(data.get("finished", False)),
            links=LinkCounts.from_dict(data.get("links", {})),
            unit=str(data.get("unit", "request")),
            workers=tuple(WorkerState(**worker) for worker in data.get("workers", ())),
        )

    @classmethod
    def combine(cls, parts: Sequence[Statistics]) -> Statistics:
        """One view of several runs side by side (the processes of one job)."""
        status: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        buckets: Counter[int] = Counter()
        for part in parts:
            outcomes.update(part.by_outcome)
            status.update(part.by_status)
            errors.update(part.by_error)
            buckets.update(part.latency_buckets)
        totals = [part.total for part in parts]
        max_ms = max((part.latency.max_ms or 0.0 for part in parts), default=0.0)
        summed = {name: sum(getattr(part, name) for part in parts) for name in _SUMMED_FIELDS}
        return cls(
            elapsed_s=max((part.elapsed_s for part in parts), default=0.0),
            total=None if None in totals else sum(t for t in totals if t is not None),
            total_is_estimate=any(part.total_is_estimate for part in parts),
            by_status=MappingProxyType(dict(status)),
            by_error=MappingProxyType(dict(errors)),
            latency=latency_from(buckets, max_ms),
            interrupted=any(part.interrupted for part in parts),
            latency_buckets=MappingProxyType(dict(buckets)),
            hosts=tuple(sorted((h for part in parts for h in part.hosts), key=_host_name)),
            dns=DNSStatistics.combine([part.dns for part in parts]),
            paused=any(part.paused for part in parts),
            by_outcome=MappingProxyType(dict(outcomes)),
            last_progress_at=max(
                (p.last_progress_at for p in parts if p.last_progress_at is not None),
                default=None,
            ),
            recent_errors=_recent([sample for part in parts for sample in part.recent_errors]),
            finished=bool(parts) and all(part.finished for part in parts),
            links=LinkCounts.combine([part.links for part in parts]),
            unit=parts[0].unit if parts else "request",
            workers=tuple(worker for part in parts for worker in part.workers),
            **summed,
        )

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
        if self.workers:  # a shared job: what no worker has finished yet
            return max(0, self.total - self.job_ok - self.job_failed)
        return max(0, self.total - self.skipped - self.done)

    @property
    def eta_s(self) -> float | None:
        remaining = self.remaining
        rate = self.requests_per_s
        if self.workers and self.elapsed_s > 0:  # the whole job's pace since this run began
            rate = (self.job_ok + self.job_failed - self.skipped) / self.elapsed_s
        if remaining is None or rate <= 0:
            return None
        return remaining / rate


def _host_name(state: HostState) -> str:
    return state.host


def _recent(samples: Sequence[ErrorSample]) -> tuple[ErrorSample, ...]:
    """The newest ``RECENT_PER_KIND`` samples of each kind, newest first."""
    kept: list[ErrorSample] = []
    per_kind: Counter[str] = Counter()
    for sample in sorted(samples, key=lambda s: (-s.at, s.kind, s.url)):
        if per_kind[sample.kind] < RECENT_PER_KIND:
            per_kind[sample.kind] += 1
            kept.append(sample)
    return tuple(kept)


_SUMMED_FIELDS = (
    "done",
    "ok",
    "failed",
    "skipped",
    "duplicates",
    "retries",
    "in_flight",
    "queued",
    "waiting_retry",
    "bytes",
    "job_ok",
    "job_failed",
)
_PLAIN_FIELDS = ("elapsed_s", "total", "total_is_estimate", "interrupted", *_SUMMED_FIELDS)


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
        self._by_outcome: Counter[str] = Counter()
        self.last_progress_at: float | None = None
        self._latency = LatencyHistogram()
        self._recent: dict[str, deque[ErrorSample]] = {}
        self.links = LinkCounts()
        self.unit = "request"

    def start(self) -> None:
        self._started = time.monotonic()
        self._finished = None

    def finish(self) -> None:
        self._finished = time.monotonic()

    def add(self, result: Finished) -> None:
        """Count a committed result."""
        self.done += 1
        response = result if isinstance(result, Result) else None
        code = None if response is None else response.status
        if response is not None:
            self.bytes += response.bytes
        self.last_progress_at = now = time.time()
        status = "none" if code is None else f"{code // 100}xx"
        if code is not None:
            self._by_status[status] += 1
        error = result.error
        if error is None:
            self.ok += 1
            self._by_outcome["ok/" + status] += 1
        else:
            self.failed += 1
            kind = error.kind.value
            self._by_error[kind] += 1
            self._by_outcome["failed/" + status] += 1
            recent = self._recent.get(kind)
            if recent is None:
                recent = self._recent[kind] = deque(maxlen=RECENT_PER_KIND)
            subject = result.url if isinstance(result, Result) else cast(Outcome, result).key
            recent.append(ErrorSample(kind, subject[:_SHOWN], error.message[:_SHOWN], now))
        if result.elapsed_ms is not None:
            self._latency.add(result.elapsed_ms)

    def snapshot(
        self,
        *,
        in_flight: int = 0,
        queued: int = 0,
        waiting_retry: int = 0,
        hosts: tuple[HostState, ...] = (),
        dns: DNSStatistics | None = None,
        paused: bool = False,
        workers: tuple[WorkerState, ...] = (),
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
            latency_buckets=self._latency.buckets(),
            hosts=hosts,
            dns=dns or DNSStatistics(),
            paused=paused,
            by_outcome=MappingProxyType(dict(self._by_outcome)),
            last_progress_at=self.last_progress_at,
            recent_errors=_recent([s for recent in self._recent.values() for s in recent]),
            finished=self._finished is not None,
            links=dataclasses.replace(self.links),
            unit=self.unit,
            workers=workers,
        )
