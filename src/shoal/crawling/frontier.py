"""The gate between a handler's follow-ups and the journal.

A handler asks for follow-ups with :meth:`shoal.Result.follow`; once its request is final,
the worker passes them through :meth:`Frontier.entries`, which checks each URL, applies
the job's :class:`shoal.Crawl` settings (depth, scope, patterns) and keys it for dedup by
its canonical form (w3lib's: query arguments sorted, percent-escapes normalised, the
fragment dropped). What passes rides on the parent's completion to the store, which admits
it in the same transaction as the parent's record, drops the ones the job already holds,
and stops at the budget: the journal is the frontier, and nothing of it lives in memory
beyond the pages in flight.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

from yarl import URL

from shoal.config import Crawl
from shoal.job import Entry, Job
from shoal.request import Request, check_url, request_key
from shoal.result import Error
from shoal.sites import Sites


@dataclass(slots=True)
class LinkCounts:
    """What became of the follow-ups of a run: ``found`` in all; ``admitted`` as new
    requests; ``duplicate`` (the job held them already), ``out_of_scope``, ``excluded``
    (by the patterns), ``too_deep``, ``over_budget`` (past ``max_requests``) and
    ``invalid`` (not an http(s) URL) left out."""

    found: int = 0
    admitted: int = 0
    duplicate: int = 0
    out_of_scope: int = 0
    excluded: int = 0
    too_deep: int = 0
    over_budget: int = 0
    invalid: int = 0

    def to_dict(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> LinkCounts:
        return cls(**{item.name: int(data.get(item.name, 0)) for item in fields(cls)})

    @classmethod
    def combine(cls, parts: Sequence[LinkCounts]) -> LinkCounts:
        return cls(**{item.name: sum(getattr(p, item.name) for p in parts) for item in fields(cls)})


#: Follow-ups found and not committed yet, at most: past it, workers wait before they take
#: more (a page can hold thousands of links, and the committer admits some 10^5 a second).
MAX_WAITING = 50_000


class Frontier:
    """Checks, scopes and keys follow-ups (see the module's notes), and bounds how many
    wait for their commit: :meth:`wait_room` before :meth:`entries`, :meth:`committed`
    once they are admitted."""

    def __init__(self, crawl: Crawl, counts: LinkCounts) -> None:
        self.crawl = crawl
        self.counts = counts
        self.waiting = 0
        self._room = asyncio.Event()
        self._room.set()
        self._include = [re.compile(pattern) for pattern in crawl.include]
        self._exclude = [re.compile(pattern) for pattern in crawl.exclude]
        self._sites = Sites()

    async def wait_room(self) -> None:
        """Wait until fewer than :data:`MAX_WAITING` follow-ups wait for their commit."""
        while self.waiting >= MAX_WAITING:
            self._room.clear()
            await self._room.wait()

    def committed(self, count: int) -> None:
        """``count`` follow-ups that :meth:`entries` gave were committed (or let go)."""
        self.waiting -= count
        if self.waiting < MAX_WAITING:
            self._room.set()

    def entries(self, job: Job, follow_ups: list[Request]) -> list[Entry]:
        """The follow-ups of ``job``'s final response that may be admitted, in order
        (they count as waiting until :meth:`committed`)."""
        counts = self.counts
        counts.found += len(follow_ups)
        depth = job.depth + 1
        limit = self.crawl.max_depth
        if limit is not None and depth > limit:
            counts.too_deep += len(follow_ups)
            return []
        parent = job.target
        entries = []
        for request in follow_ups:
            checked = check_url(request.url)
            if isinstance(checked, Error):
                counts.invalid += 1
                continue
            if parent is not None and not self._in_scope(checked, parent):
                counts.out_of_scope += 1
                continue
            text = str(checked)
            if (self._include and not any(p.search(text) for p in self._include)) or any(
                p.search(text) for p in self._exclude
            ):
                counts.excluded += 1
                continue
            if text != request.url:
                request = Request(
                    text,
                    method=request.method,
                    headers=request.headers,
                    body=request.body,
                    id=request.id,
                    meta=request.meta,
                )
            # yarl has normalised the scheme, host, port and escapes already: only a query
            # (argument order, blank values) or an escape left needs w3lib's canonical form.
            canonical = _canonical(text) if "?" in text or "%" in text else text
            key = request_key(request, URL(canonical, encoded=True))
            entries.append(
                Entry(request, key, None, checked, None, depth, job.seq, job.request.url)
            )
        self.waiting += len(entries)
        return entries

    def _in_scope(self, url: URL, parent: URL) -> bool:
        scope = self.crawl.scope
        if scope == "all":
            return True
        host = (url.raw_host or "").lower()
        parent_host = (parent.raw_host or "").lower()
        if scope == "same-host":  # the port too, unless both are their scheme's default
            return host == parent_host and _port(url) == _port(parent)
        if scope == "same-origin":
            return host == parent_host and (url.scheme, url.port) == (parent.scheme, parent.port)
        return self._sites(host) == self._sites(parent_host)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _port(url: URL) -> int | None:
    """The URL's port, or ``None`` when it is its scheme's default."""
    port = url.port
    return None if port == _DEFAULT_PORTS.get(url.scheme) else port


def _canonical(url: str) -> str:
    """w3lib's canonical form of ``url`` (imported when first needed: about 50 ms, which a
    fetch that follows nothing need not spend at start-up)."""
    from w3lib.url import canonicalize_url

    return canonicalize_url(url)
