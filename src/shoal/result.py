"""What a finished request becomes: a :class:`Result`, and the JSON record written for it."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multidict import CIMultiDictProxy
from yarl import URL

from shoal.errors import Error, ErrorKind
from shoal.request import Request

__all__ = ["Error", "ErrorKind", "Result", "WarcLocation", "endpoint", "endpoint_of", "iso_time"]


def endpoint(secure: bool, host: str, port: int | None) -> str:
    """The name of what a connection goes to: ``scheme://host:port`` (an IPv6 address in
    brackets, the port always given). Connection health is kept per endpoint."""
    scheme = "https" if secure else "http"
    if port is None:
        port = 443 if secure else 80
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def endpoint_of(url: URL) -> str:
    """The endpoint a request for ``url`` connects to (see :func:`endpoint`)."""
    return endpoint(url.scheme == "https", url.raw_host or "", url.port)


@dataclass(frozen=True, slots=True)
class WarcLocation:
    """Where a request's final response record is in the archive (``--warc``)."""

    filename: str
    offset: int
    length: int

    def to_record(self) -> dict[str, Any]:
        return {"filename": self.filename, "offset": self.offset, "length": self.length}


@dataclass(slots=True, kw_only=True)
class Result:
    """The outcome of one request, after all its attempts.

    ``error`` is ``None`` for a success. ``started_at`` is the Unix time the last attempt
    started (the record holds it as ISO 8601). ``body`` and ``headers`` are only held in memory for
    library callers (``keep_body=True``); they are not part of the JSON record.
    """

    url: str
    id: str | None = None
    method: str = "GET"
    line: int | None = None
    final_url: str | None = None
    status: int | None = None
    error: Error | None = None
    attempts: int = 0
    bytes: int = 0
    sha256: str | None = None
    content_type: str | None = None
    elapsed_ms: float | None = None
    ttfb_ms: float | None = None
    started_at: float | None = None
    redirects: int = 0
    #: Each redirect followed, in order: the URL answered and its status.
    redirect_chain: list[tuple[str, int]] | None = None
    #: The address connected to for the final response (``host:port``; a proxy's through
    #: a proxy).
    address: str | None = None
    #: The response headers the record keeps (``Records.keep_headers``).
    kept_headers: dict[str, str | list[str]] | None = None
    meta: Any = None
    data: Any = None
    #: How many links away from the input this request is (0: it came from the input).
    depth: int = 0
    #: The URL of the request whose response gave this one (``follow``), if any.
    parent: str | None = None
    #: Where the body is stored, relative to the ``--save-bodies`` folder.
    body_path: str | None = None
    body: builtins.bytes | None = field(default=None, repr=False)
    #: Where the final response is archived (``--warc``).
    warc: WarcLocation | None = None
    headers: CIMultiDictProxy[str] | None = field(default=None, repr=False)
    #: What :meth:`follow` was given, until the engine admits it (internal).
    follow_ups: list[Request] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the request succeeded (no error)."""
        return self.error is None

    def follow(self, target: str | Request) -> None:
        """Ask for a follow-up request (from a handler): a URL, relative ones resolved
        against this response's final URL, or a :class:`shoal.Request`.

        It is admitted with this one's depth + 1 and this URL as its parent, in the same
        commit as this record, unless the engine's :class:`shoal.Crawl` settings leave it
        out (depth, scope, patterns, budget) or the job holds it already.
        """
        request = target if isinstance(target, Request) else None
        text = target if request is None else request.url
        if not isinstance(text, str):
            raise TypeError(f"follow() takes a URL or a Request, not {type(target).__name__}")
        if text.startswith(("http://", "https://")):
            absolute = text  # (most links, once a parser has resolved them)
        else:
            try:
                absolute = str(URL(self.final_url or self.url).join(URL(text)))
            except ValueError:
                absolute = text  # not a URL: kept as given, and failed as an invalid one
        if request is None:
            request = Request(absolute)
        elif absolute != request.url:
            request = dataclasses.replace(request, url=absolute)
        if self.follow_ups is None:
            self.follow_ups = []
        self.follow_ups.append(request)

    def text(self, encoding: str | None = None) -> str:
        """The body decoded as text (needs ``keep_body=True``)."""
        if self.body is None:
            raise ValueError("no body kept: pass keep_body=True to keep bodies in memory")
        return self.body.decode(encoding or _charset(self.headers) or "utf-8", errors="replace")

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready record, as documented in ``record.schema.json``."""
        record = {
            "url": self.url,
            "id": self.id,
            "method": self.method,
            "line": self.line,
            "final_url": self.final_url,
            "status": self.status,
            "error": None if self.error is None else self.error.to_record(),
            "attempts": self.attempts,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "elapsed_ms": self.elapsed_ms,
            "ttfb_ms": self.ttfb_ms,
            "started_at": None if self.started_at is None else iso_time(self.started_at),
            "redirects": self.redirects,
            "body_path": self.body_path,
            "warc": None if self.warc is None else self.warc.to_record(),
            "meta": self.meta,
            "data": self.data,
            "depth": self.depth,
            "parent": self.parent,
            "redirect_chain": [
                {"url": url, "status": status} for url, status in self.redirect_chain or ()
            ],
            "address": self.address,
        }
        if self.kept_headers is not None:
            record["headers"] = self.kept_headers
        return record


def iso_time(timestamp: float) -> str:
    """``datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")``, with the
    date and time of day formatted once per second (that call costs about 5 µs a record)."""
    fraction, whole = math.modf(timestamp)
    micros = round(fraction * 1e6)  # as datetime rounds: half to even, carried to the second
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    return f"{_second(int(whole))}.{micros // 1000:03d}+00:00"


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return datetime.fromtimestamp(whole, UTC).isoformat(timespec="seconds").removesuffix("+00:00")


def _charset(headers: CIMultiDictProxy[str] | None) -> str | None:
    if headers is None:
        return None
    content_type = headers.get("Content-Type", "")
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"')
    return None
