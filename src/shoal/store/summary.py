"""What a job's readers read back: its summary, its record totals, its timeline and the
report's groupings, as plain values; and :class:`TotalsCounter`, which sums the totals over
raw records for every kind of store alike."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import orjson

from shoal.latency import LatencyHistogram
from shoal.sources.items import MAP_INPUT

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobSummary:
    """What a journal says of its job."""

    input: str
    admitted: int
    ok: int
    failed: int
    input_done: bool
    lines_read: int
    #: Final failures by error kind, and final records by status class (``2xx``...).
    by_error: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return self.admitted - self.ok - self.failed

    @property
    def mapped(self) -> bool:
        """Whether the job is a ``shoal.map`` (its records are outcomes of items)."""
        return self.input.startswith(MAP_INPUT)


@dataclass(frozen=True, slots=True)
class Interval:
    """What was committed in ``seconds`` seconds from Unix time ``start``."""

    start: int
    seconds: int
    ok: int
    failed: int
    bytes: int
    attempts: int


@dataclass(frozen=True, slots=True)
class TimelineSpan:
    """The seconds a job's timeline covers, and from where it is read.

    ``source`` is ``"journal"`` (the journal's own per-second commit counts) or, for a
    journal whose timeline lacks some records (one made by an earlier shoal), ``"records"``:
    each record counted in the second its last attempt ended (``started_at`` plus
    ``elapsed_ms``), which leaves out records with no attempt (bad input lines).
    """

    source: str
    first: int
    last: int
    ok: int
    failed: int


@dataclass(frozen=True, slots=True)
class RecordTotals:
    """Sums over every final record, from one pass."""

    records: int = 0
    bytes: int = 0
    attempts: int = 0
    #: Attempts after each request's first.
    retries: int = 0
    redirects: int = 0
    #: Final records by exact status (``None``: no response came).
    statuses: dict[int | None, int] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    first_byte: LatencyHistogram = field(default_factory=LatencyHistogram)
    #: WARC file name to (responses archived in it, the end of the last one).
    warc_files: dict[str, tuple[int, int]] = field(default_factory=dict)
    bodies: int = 0
    body_bytes: int = 0


@dataclass(frozen=True, slots=True)
class HostRow:
    """One host's final records (``host`` ``None``: a request with no host name)."""

    host: str | None
    requests: int
    failed: int
    bytes: int
    mean_ms: float | None


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Final failures with the same kind and message, and the first of their URLs."""

    kind: str
    message: str
    count: int
    example_url: str


@dataclass(frozen=True, slots=True)
class Top(Generic[T]):
    """The first ``rows`` of a grouping, and how many groups there are in all."""

    rows: list[T]
    groups: int


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One worker of a job on a shared store: its records, and whether it signed off."""

    worker: str
    machine: str
    ok: int
    failed: int
    #: Whether it stopped and said so (one that did not is running, or was killed).
    stopped: bool


class TotalsCounter:
    """:class:`RecordTotals` summed over raw JSON records, a batch at a time: every reader
    (a journal's, a shared store's) streams its records through one."""

    def __init__(self) -> None:
        self._statuses: Counter[int | None] = Counter()
        self._latency = LatencyHistogram()
        self._first_byte = LatencyHistogram()
        self._warc: dict[str, tuple[int, int]] = {}
        self._records = self._bytes = self._attempts = self._retries = 0
        self._redirects = self._bodies = self._body_bytes = 0

    def add(self, raws: Iterable[bytes]) -> None:
        """Count each of these records (its JSON text)."""
        statuses, warc = self._statuses, self._warc
        latency, first_byte = self._latency.add, self._first_byte.add
        records, size, attempts, retries = self._records, self._bytes, self._attempts, self._retries
        redirects, bodies, body_bytes = self._redirects, self._bodies, self._body_bytes
        loads = orjson.loads  # faster here than SQL's JSON functions on ten fields
        for raw in raws:
            record = loads(raw)
            records += 1
            statuses[record.get("status")] += 1
            nbytes = record.get("bytes") or 0
            size += nbytes
            tries = record.get("attempts") or 0
            if tries:
                attempts += tries
                retries += tries - 1
            redirects += record.get("redirects") or 0
            if (elapsed := record.get("elapsed_ms")) is not None:
                latency(elapsed)
            if (ttfb := record.get("ttfb_ms")) is not None:
                first_byte(ttfb)
            if record.get("body_path") is not None:
                bodies += 1
                body_bytes += nbytes
            if archived := record.get("warc"):
                count, end = warc.get(archived["filename"], (0, 0))
                reach = max(end, archived["offset"] + archived["length"])
                warc[archived["filename"]] = (count + 1, reach)
        self._records, self._bytes, self._attempts, self._retries = records, size, attempts, retries
        self._redirects, self._bodies, self._body_bytes = redirects, bodies, body_bytes

    def totals(self) -> RecordTotals:
        """The sums, once every record is added, in a fixed order (statuses by code, web
        archives by name)."""
        return RecordTotals(
            records=self._records,
            bytes=self._bytes,
            attempts=self._attempts,
            retries=self._retries,
            redirects=self._redirects,
            statuses=dict(sorted(self._statuses.items(), key=lambda item: _order(item[0]))),
            latency=self._latency,
            first_byte=self._first_byte,
            warc_files=dict(sorted(self._warc.items())),
            bodies=self._bodies,
            body_bytes=self._body_bytes,
        )


def _order(status: int | None) -> int:
    return 0 if status is None else status
