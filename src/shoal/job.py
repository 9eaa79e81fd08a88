"""The units of work that flow between the stages: an input :class:`Entry`, a :class:`Job`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from yarl import URL

from shoal.request import Request, check_url
from shoal.result import Error, Result


@dataclass(slots=True, eq=False)
class Entry:
    """One input item after parsing: a valid request, or why the item is not one.

    ``target`` is the checked URL (``None`` when ``error`` is set); ``key`` deduplicates.
    A follow-up (see :meth:`shoal.Result.follow`) has a ``depth`` above 0 and its
    ``parent``'s seq and URL.
    """

    request: Request
    key: bytes
    line: int | None
    target: URL | None
    error: Error | None
    depth: int = 0
    parent: int | None = None
    parent_url: str | None = None


@dataclass(slots=True, eq=False)
class Job:
    """An admitted request, known to the store by ``seq``, on its way to a final result."""

    seq: int
    request: Request
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
    #: The loop time the current attempt started (kept when a host adapts its pace).
    started: float = 0.0
    #: Set while the attempt's host is paced and its request is not sent yet: the task
    #: calls it (with the job) once the request is on the wire, which lets the host's pace
    #: count from then (see :meth:`shoal.scheduling.hosts.HostControl.started`).
    on_sent: Callable[[Job], None] | None = None

    def result(self, *, error: Error | None = None, started_at: float | None = None) -> Result:
        """A new result for this job, carrying the request's identity and the attempts."""
        request = self.request
        return Result(
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
        target = entry.target
        host = "" if target is None else (target.raw_host or "")
        job = cls(seq, entry.request, entry.line, target, entry.error, host)
        job.depth, job.parent_url = entry.depth, entry.parent_url
        return job

    @classmethod
    def restore(
        cls,
        seq: int,
        request: Request,
        line: int | None,
        error: Error | None,
        attempts: int,
        depth: int = 0,
        parent_url: str | None = None,
    ) -> Job:
        """Rebuild a job that the store admitted but that is not final yet.

        Its URL was checked and normalised at admission, so it is taken as it is.
        """
        target: URL | None = None
        if error is None:
            try:
                target = URL(request.url, encoded=True)
            except ValueError:  # not from a journal shoal wrote: check it in full
                checked = check_url(request.url)
                if isinstance(checked, Error):
                    error = checked
                else:
                    target = checked
        host = "" if target is None else (target.raw_host or "")
        return cls(seq, request, line, target, error, host, attempts, depth, parent_url)
