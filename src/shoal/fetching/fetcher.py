"""One attempt at one request: send it through the transport, stream the body under a size
limit, undo its content coding, hash it, and hand it to the body files."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from yarl import URL

from shoal import capture as wire
from shoal.config import Limits, Records, Timeouts, option_name, size_text
from shoal.errors import Error, ErrorKind
from shoal.fetched import Fetched
from shoal.fetching import deadlines
from shoal.fetching.deadlines import Attempt, Watchdog
from shoal.fetching.decoding import Decoder, Undecodable
from shoal.fetching.failures import classify, undecodable
from shoal.fetching.proxies import Proxies
from shoal.fetching.transport import Incoming, Outgoing, Transport, TransportFailure
from shoal.job import Job

log = logging.getLogger("shoal")


class BodyFiles(Protocol):
    """Where the fetcher writes the bytes it keeps: a saved body, or an archived response's
    spooled bytes (``shoal.sinks`` implements it: its body store and spool)."""

    def new_file(self) -> str:
        """The path of a new, empty file (created on its first write)."""
        ...

    async def write(self, path: str, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` to the file at ``path`` (off the event loop)."""
        ...

    def forget(self, path: str) -> None:
        """Remove the file at ``path`` (from the event loop: without waiting on it)."""
        ...


class HostRule(Protocol):
    """What the fetcher reads of a host's rule (``shoal.scheduling.HostRule`` is one)."""

    @property
    def timeouts(self) -> Timeouts | None: ...
    @property
    def headers(self) -> Mapping[str, str] | None: ...


class HostRules(Protocol):
    """The rules of each host (``shoal.scheduling.HostRules`` is one)."""

    def for_host(self, host: str) -> HostRule: ...


#: Bodies up to this size with a Content-Length are read in one piece.
_SMALL_BODY = 64 * 1024
#: A saved body is written out each time this much of it has arrived.
_FLUSH_BYTES = 1024 * 1024
#: The bytes of a response to archive are spooled to a file once this many arrived.
_SPILL_BYTES = 256 * 1024
#: A redirect's body is archived up to this size (the rest is cut, and marked so).
_REDIRECT_CAP = 1024 * 1024


class _TooLarge(Exception):
    pass


class Fetcher:
    """The default task (a :class:`shoal.engine.Task`): an HTTP request through the
    engine's transport."""

    def __init__(
        self,
        transport: Transport,
        *,
        limits: Limits,
        timeouts: Timeouts,
        watchdog: Watchdog,
        fail_http: bool = False,
        keep_body: bool = False,
        proxies: Proxies | None = None,
        rules: HostRules | None = None,
        bodies: BodyFiles | None = None,
        archive: BodyFiles | None = None,
        budget: wire.Budget | None = None,
        records: Records | None = None,
    ) -> None:
        self._transport = transport
        self._records = records or Records()
        self._rules = rules
        self._bodies = bodies
        self._archive = archive
        self._budget = budget or wire.Budget()
        self._max_bytes = limits.max_bytes
        self._max_redirects = limits.max_redirects
        self._timeouts = timeouts
        self._watchdog = watchdog
        self._fail_http = fail_http
        self._keep_body = keep_body
        self._proxies = proxies or Proxies(environment=False)

    async def run(self, job: Job) -> Fetched:
        proxies = self._proxies
        if proxies.varies:
            proxy = proxies.for_url(job.target or URL(job.request.url))
        else:
            proxy = proxies.fixed
        if self._archive is None:
            return await self._attempt(job, None, proxy)
        capture = wire.Capture(min(_REDIRECT_CAP, self._max_bytes), proxied=proxy is not None)
        kept = False
        try:
            result = await self._attempt(job, capture, proxy)
            kept = result.capture is not None
            if kept and not self._budget.hold(capture):
                for exchange in capture.exchanges:
                    if exchange.pending:
                        await self._spill(exchange)
        finally:
            if not kept:
                for path in capture.spools:
                    self._archive.forget(path)
        return result

    async def _attempt(self, job: Job, capture: wire.Capture | None, proxy: str | None) -> Fetched:
        result = job.fetched(started_at=time.time())
        timeouts = self._timeouts
        headers = job.request.headers
        if self._rules is not None:  # the host's overrides, looked up once per attempt
            rule = self._rules.for_host(job.host)
            timeouts = rule.timeouts or timeouts
            if rule.headers:
                headers = {**rule.headers, **(headers or {})}
        start = time.perf_counter()
        attempt = self._watchdog.start(timeouts)
        if job.on_sent is not None:  # its host is paced from the moment it is sent
            attempt.on_sent = functools.partial(job.on_sent, job)
        try:
            await self._exchange(job, headers, result, start, capture, attempt, proxy)
        except asyncio.CancelledError:
            if not attempt.timed_out():
                raise
            result.error = _expired(attempt, timeouts, job)
        except _TooLarge as exc:
            # args: the Content-Encoding of a body found too large as it was decoded
            decoded = f" once decoded (Content-Encoding: {exc.args[0]})" if exc.args else ""
            result.error = Error(
                ErrorKind.TOO_LARGE,
                f"body larger than {option_name('max_bytes')} ({size_text(self._max_bytes)})"
                f"{decoded}",
            )
        except Undecodable as exc:
            result.error = undecodable(exc.header, exc.reason)
        except TransportFailure as exc:
            result.error = exc.error
            if exc.redirect_chain is not None:
                result.redirect_chain = exc.redirect_chain
        except (OSError, TimeoutError) as exc:  # (writing a saved body, say)
            result.error = classify(exc)
        except (ValueError, TypeError, LookupError) as exc:
            log.warning("request %s failed unexpectedly", job.request.url, exc_info=True)
            result.error = Error(ErrorKind.PROTOCOL, f"{type(exc).__name__}: {exc}")
        finally:
            self._watchdog.end(attempt)
        result.address = attempt.peer
        result.elapsed_ms = round((time.perf_counter() - start) * 1000, 3)
        return result

    async def _exchange(
        self,
        job: Job,
        headers: Mapping[str, str] | None,
        result: Fetched,
        start: float,
        capture: wire.Capture | None,
        attempt: Attempt,
        proxy: str | None,
    ) -> None:
        request = job.request
        outgoing = Outgoing(
            method=request.method,
            url=job.target or request.url,
            headers=headers,
            body=request.body,
            proxy=proxy,
            max_redirects=self._max_redirects,
            attempt=attempt,
            capture=capture,
        )
        async with self._transport.exchange(outgoing) as response:
            result.ttfb_ms = round((time.perf_counter() - start) * 1000, 3)
            result.status = status = response.status
            result.final_url = response.url
            history = response.history
            if history:
                result.redirects = len(history)
                result.redirect_chain = list(history)
            headers = result.headers = response.headers
            if self._records.keep_headers:
                result.kept_headers = self._records.kept(headers)
            result.content_type = headers.get("Content-Type")
            length = response.content_length
            if (
                length is not None
                and length > self._max_bytes
                and "Content-Encoding" not in headers
                and request.method != "HEAD"  # these announce a body they do not carry
                and status not in (204, 304)
            ):
                raise _TooLarge
            await self._read_body(response, result, capture, attempt)
        if capture is not None:
            result.capture = capture  # the whole response arrived: it can be archived
        if self._fail_http and not 200 <= status < 300:
            result.error = Error(ErrorKind.HTTP_STATUS, f"HTTP {status}")

    async def _read_body(
        self,
        response: Incoming,
        result: Fetched,
        capture: wire.Capture | None,
        attempt: Attempt,
    ) -> None:
        length = response.content_length
        if (
            length is not None
            and length <= _SMALL_BODY
            and "Content-Encoding" not in response.headers
        ):
            # A small body of known, uncompressed size: read it whole (the common case, and
            # cheaper than a loop); the transport stops at Content-Length.
            body = await response.read()
            result.bytes = len(body)
            result.sha256 = hashlib.sha256(body).hexdigest()
            if self._keep_body:
                result.body = body
            if self._bodies is not None:
                small = self._bodies.new_file()
                await self._bodies.write(small, [body])
                result.body_file = small
            return
        digest = hashlib.sha256()
        size = 0
        limit = self._max_bytes
        chunks: list[bytes] | None = [] if self._keep_body else None
        bodies = self._bodies
        path = None if bodies is None else bodies.new_file()
        exchange = None if capture is None or not capture.exchanges else capture.exchanges[-1]
        waiting: list[bytes] = []  # read, not yet written: at most about _FLUSH_BYTES
        waiting_size = 0
        decoder = Decoder.of(response.headers)
        unyielded = 0  # bytes decoded since other tasks last had a turn
        try:
            async for chunk in response.chunks():
                # A piece at a time, so a bomb is stopped at max_bytes, never held whole.
                for piece in (chunk,) if decoder is None else decoder.feed(chunk):
                    size += len(piece)
                    if size > limit:
                        raise _TooLarge() if decoder is None else _TooLarge(decoder.header)
                    digest.update(piece)
                    if chunks is not None:
                        chunks.append(piece)
                    if bodies is not None and path is not None:
                        waiting.append(piece)
                        waiting_size += len(piece)
                        if waiting_size >= _FLUSH_BYTES:
                            await bodies.write(path, waiting)
                            waiting, waiting_size = [], 0
                            attempt.touch(asyncio.get_running_loop().time())
                    if decoder is not None:
                        unyielded += len(piece)
                        if unyielded >= _FLUSH_BYTES:  # a small chunk may decode to a lot
                            unyielded = 0
                            await asyncio.sleep(0)
                            attempt.touch(asyncio.get_running_loop().time())
                if exchange is not None and exchange.pending >= _SPILL_BYTES:
                    await self._spill(exchange)
                    attempt.touch(asyncio.get_running_loop().time())
            if decoder is not None:
                decoder.finish()
            if bodies is not None and path is not None:
                await bodies.write(path, waiting)  # creates the file of an empty body too
                result.body_file = path
        except BaseException:
            if bodies is not None and path is not None:
                bodies.forget(path)
            raise
        result.bytes = size
        result.sha256 = digest.hexdigest()
        if chunks is not None:
            result.body = b"".join(chunks)

    async def _spill(self, exchange: wire.Exchange) -> None:
        """Move the received bytes of a large response to its spool file."""
        spool = self._archive
        assert spool is not None
        if exchange.spool is None:
            exchange.spool = spool.new_file()
        await spool.write(exchange.spool, exchange.take())


def _expired(attempt: Attempt, timeouts: Timeouts, job: Job) -> Error:
    """The error of an attempt the watchdog ended at its connect or total deadline."""
    if attempt.expired == deadlines.CONNECT:
        return Error(
            ErrorKind.TIMEOUT,
            f"Connection timeout to host {job.target or job.request.url}"
            f" (connect timeout {timeouts.connect_s:g} s)",
        )
    return Error(ErrorKind.TIMEOUT, f"attempt exceeded the total timeout ({timeouts.total_s:g} s)")
