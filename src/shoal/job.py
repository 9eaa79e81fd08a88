"""The units of work that flow between the stages: an input :class:`Entry`, a :class:`Job`.

A job's *work* is what its task works on: a :class:`shoal.Request` for the default task
(an HTTP fetch), or an :class:`Item` for a mapped coroutine (``shoal.map``). Everything
between the source and the sinks (store, scheduler, workers, committer) handles both alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from yarl import URL

from shoal.errors import Error
from shoal.fetched import Fetched
from shoal.outcome import Outcome
from shoal.request import Request, check_url, normalise
from shoal.result import Result

_R = TypeVar("_R", bound=Result)


@dataclass(frozen=True, slots=True)
class Item:
    """One input of a mapped coroutine: a JSON ``value``, its ``key`` (its identity in the
    journal) and its ``group`` (the bucket per-group caps and rates apply to; ``None``:
    none)."""

    value: Any
    key: str
    group: str | None = None


#: What a job's task works on.
Work = Request | Item


@dataclass(slots=True, eq=False)
class Entry:
    """One input item after parsing: valid work, or why the item is not such.

    ``target`` is a request's checked URL (``None`` for an item, or when ``error`` is set);
    ``key`` deduplicates. A follow-up (see :meth:`shoal.Result.follow`) has a ``depth``
    above 0 and its ``parent``'s seq and URL.
    """

    work: Work
    key: bytes
    line: int | None
    target: URL | None
    error: Error | None
    depth: int = 0
    parent: int | None = None
    parent_url: str | None = None

    @property
    def request(self) -> Request:
        return _request(self.work)

    @property
    def host(self) -> str | None:
        """The scheduler's bucket: a request's host, an item's group (``None``: an error,
        or an item in no group)."""
        if self.target is not None:
            return self.target.raw_host or ""
        work = self.work
        return work.group if isinstance(work, Item) and self.error is None else None


@dataclass(slots=True, eq=False)
class Job:
    """Admitted work, known to the store by ``seq``, on its way to a final result.

    ``host`` is the scheduler's bucket: a request's host, or an item's group.
    """

    seq: int
    work: Work
    line: int | None
    target: URL | None
    error: Error | None
    host: str
    attempts: int = 0
    depth: int = 0
    #: The URL of the request that gave this one, for a follow-up.
    parent_url: str | None = None
    #: The follow-ups the final response gave, to admit as it commits (internal).
    found: list[Entry] | None = None
    #: The fencing token of the host lease it was claimed under (a shared store's; 0:
    #: none): its result commits only while that lease is still this worker's.
    lease: int = 0
    #: The loop time the current attempt started (kept when a host adapts its pace).
    started: float = 0.0
    #: Set while the attempt's host is paced and its request is not sent yet: the task
    #: calls it (with the job) once the request is on the wire, which lets the host's pace
    #: count from then (see :meth:`shoal.scheduling.hosts.HostControl.started`).
    on_sent: Callable[[Job], None] | None = None

    @property
    def request(self) -> Request:
        """The work of a fetch job."""
        return _request(self.work)

    @property
    def item(self) -> Item:
        """The work of a mapped job."""
        work = self.work
        if not isinstance(work, Item):
            raise TypeError("a fetch job has a request, not an item")
        return work

    def failed(self, error: Error) -> Result | Outcome:
        """The final result of a job that ends with ``error`` without its task running."""
        if isinstance(self.work, Item):
            return self.outcome(error=error)
        return self.result(error=error)

    def outcome(self, *, error: Error | None = None, started_at: float | None = None) -> Outcome:
        """A new outcome for this mapped job, carrying the item and the attempts."""
        item = self.item
        return Outcome(
            key=item.key,
            item=item.value,
            group=item.group,
            line=self.line,
            error=error,
            attempts=self.attempts,
            started_at=started_at,
        )

    def result(self, *, error: Error | None = None, started_at: float | None = None) -> Result:
        """A new result for this fetch job, carrying the request's identity and the
        attempts."""
        return self._result(Result, error, started_at)

    def fetched(self, *, started_at: float | None = None) -> Fetched:
        """A new result for an attempt at this fetch job (see :meth:`result`), with room
        for what the fetch leaves to settle."""
        return self._result(Fetched, None, started_at)

    def _result(self, kind: type[_R], error: Error | None, started_at: float | None) -> _R:
        request = self.request
        return kind(
            url=request.url,
            id=request.id,
            method=request.method,
            line=self.line,
            meta=request.meta,
            error=error,
            attempts=self.attempts,
            started_at=started_at,
            depth=self.depth,
            parent=self.parent_url,
        )

    @classmethod
    def admit(cls, seq: int, entry: Entry) -> Job:
        job = cls(seq, entry.work, entry.line, entry.target, entry.error, entry.host or "")
        job.depth, job.parent_url = entry.depth, entry.parent_url
        return job

    @classmethod
    def restore(
        cls,
        seq: int,
        work: Work,
        line: int | None,
        error: Error | None,
        attempts: int,
        depth: int = 0,
        parent_url: str | None = None,
    ) -> Job:
        """Rebuild a job that the store admitted but that is not final yet.

        Its URL was checked at admission; it is normalised again the same way (host
        lower-cased and IDNA-encoded, path escapes made canonical), so that the rebuilt
        job has the bucket and the target it was admitted with.
        """
        if isinstance(work, Item):
            group = work.group if error is None else None
            return cls(seq, work, line, None, error, group or "", attempts, depth, parent_url)
        request = work
        target: URL | None = None
        if error is None:
            try:
                target = normalise(URL(request.url))
            except ValueError:  # not from a journal shoal wrote: check it in full
                checked = check_url(request.url)
                if isinstance(checked, Error):
                    error = checked
                else:
                    target = checked
        host = "" if target is None else (target.raw_host or "")
        return cls(seq, request, line, target, error, host, attempts, depth, parent_url)


def _request(work: Work) -> Request:
    if not isinstance(work, Request):
        raise TypeError("a mapped job has an item, not a request")
    return work
