"""A chaos server on 127.0.0.1: every request path gets a named fault, chosen from a seed.

The path ``/c/{index}`` names request number ``index``. Which fault it meets is a pure
function of ``(seed, index)`` (:meth:`Chaos.plan`), so a test computes the expected outcome
of every URL without asking the server. Host names (all mapped to 127.0.0.1 by the client)
spread the load, and keep apart the faults that change how shoal treats a whole host:

* ``h{k}.test`` (``hosts`` of them) carry every fault but the three below;
* ``pause{k}.test`` carry the ``retry-after-*`` faults: a Retry-After on a 429 pauses its
  whole host in shoal, so these stall only each other;
* ``refused{k}.test`` carry ``refused``: consecutive connection failures get a host parked,
  probed and given up in shoal (its remaining requests fail unsent);
* ``dns{k}.test`` carry ``redirect-unresolvable``, whose DNS failures shoal also counts
  against the host that answered with the redirect.

A fault is either *permanent* (every attempt meets it) or *transient*: the first ``fails``
attempts meet it, and later ones get a plain 200. The server counts the requests it sees
per ``(host, path)``, which is both how it knows the attempt number and how a test checks
shoal's ``attempts`` from the server's side.

The faults (:class:`Fault`) and what one attempt that meets them looks like on the wire:

========================  ==============================================================
``ok``                    200, a small body with a Content-Length
``large``                 200, a body of :data:`LARGE_SIZE` bytes, chunked (streamed read)
``gzip``                  200, a small gzip-encoded body
``not-found``             404 (a response: not retried, and not a failure)
``status-500`` … ``504``  that status, with a small body
``retry-after-seconds``   429 with ``Retry-After: 0`` (or, one time in four, ``1``)
``retry-after-date``      429 with ``Retry-After`` as an HTTP date: past (or ≤ 1 s ahead)
``retry-after-too-long``  429 with a ``Retry-After`` (seconds or date) an hour ahead
``reset-before-headers``  reads the request, then resets the connection (RST)
``reset-after-headers``   headers and 10 of 1000 promised bytes, then RST
``close-before-headers``  reads the request, then closes (FIN) without answering
``truncated``             Content-Length 1000, 10 bytes sent, then FIN
``trickle``               headers, then the body at 1 byte per second
``hang-before-headers``   reads the request and never answers
``hang-after-headers``    headers, then never a byte of the body
``bad-chunked``           a chunked body with a chunk size that is not hexadecimal
``bad-status-line``       ``HTTP/1.1 WHAT NOPE``
``bad-header``            a header line without a colon
``huge-header``           one header line of 40,000 bytes
``oversized``             Content-Length of 1 GiB (only the headers are sent)
``gzip-bomb``             a gzip body of ~32 KiB that inflates to :data:`BOMB_SIZE` bytes
``redirect-loop``         302 to itself, forever
``redirect-cross-host``   302 to ``h{index + 1}.test``'s ``/c/{index}/landed`` (a 200)
``redirect-unresolvable`` 302 to a name under ``.invalid``
``redirect-ftp``          302 to an ``ftp://`` URL
``never-accept``          the URL's port is a listening socket that never accepts
``refused``               the URL's port is bound but not listening (connection refused)
========================  ==============================================================

The two socket faults never reach the HTTP server, so the server counts nothing for them.
``never-accept`` is a socket with a backlog of :data:`BACKLOG` on which ``accept()`` is never
called: the kernel completes the first handshakes itself and queues them (the client sends
its request and then waits for an answer: a read timeout), and once the queue is full it
drops further SYNs (the client's connect times out). Either way the client sees a timeout.
``refused`` answers every SYN with a RST: a connect error.

The client must accept bodies of :data:`LARGE_SIZE` bytes and reject those of
:data:`BOMB_SIZE` (its ``max_bytes`` lies in between), and its read timeout must be well
under a second (the trickle's pace) and under :data:`HANG_S`.

Run it on its own (for a manual look, or from another process)::

    python -m tests.chaos.chaos_server --seed 7 --requests 20

prints the ports and the first URLs, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import email.utils
import enum
import hashlib
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Self

from aiohttp import web
from aiohttp.web_request import Request


class Fault(enum.StrEnum):
    """The named faults; the value is the name used in reports."""

    OK = "ok"
    LARGE = "large"
    GZIP = "gzip"
    NOT_FOUND = "not-found"
    STATUS_500 = "status-500"
    STATUS_502 = "status-502"
    STATUS_503 = "status-503"
    STATUS_504 = "status-504"
    RETRY_AFTER_SECONDS = "retry-after-seconds"
    RETRY_AFTER_DATE = "retry-after-date"
    RETRY_AFTER_TOO_LONG = "retry-after-too-long"
    RESET_BEFORE_HEADERS = "reset-before-headers"
    RESET_AFTER_HEADERS = "reset-after-headers"
    CLOSE_BEFORE_HEADERS = "close-before-headers"
    TRUNCATED = "truncated"
    TRICKLE = "trickle"
    HANG_BEFORE_HEADERS = "hang-before-headers"
    HANG_AFTER_HEADERS = "hang-after-headers"
    BAD_CHUNKED = "bad-chunked"
    BAD_STATUS_LINE = "bad-status-line"
    BAD_HEADER = "bad-header"
    HUGE_HEADER = "huge-header"
    OVERSIZED = "oversized"
    GZIP_BOMB = "gzip-bomb"
    REDIRECT_LOOP = "redirect-loop"
    REDIRECT_CROSS_HOST = "redirect-cross-host"
    REDIRECT_UNRESOLVABLE = "redirect-unresolvable"
    REDIRECT_FTP = "redirect-ftp"
    NEVER_ACCEPT = "never-accept"
    REFUSED = "refused"


#: Faults that can be transient: the server can count their attempts and answer 200 later.
TRANSIENT = frozenset(
    {
        Fault.STATUS_500,
        Fault.STATUS_502,
        Fault.STATUS_503,
        Fault.STATUS_504,
        Fault.RETRY_AFTER_SECONDS,
        Fault.RETRY_AFTER_DATE,
        Fault.RESET_BEFORE_HEADERS,
        Fault.RESET_AFTER_HEADERS,
        Fault.CLOSE_BEFORE_HEADERS,
        Fault.TRUNCATED,
        Fault.TRICKLE,
        Fault.HANG_BEFORE_HEADERS,
        Fault.HANG_AFTER_HEADERS,
    }
)
#: Faults whose attempts wait for a client timeout: the slow ones.
SLOW = frozenset(
    {
        Fault.TRICKLE,
        Fault.HANG_BEFORE_HEADERS,
        Fault.HANG_AFTER_HEADERS,
        Fault.NEVER_ACCEPT,
    }
)
#: The host-name family of the faults that do not go to ``h{k}.test``, and how many hosts
#: each family has.
FAMILY: Mapping[Fault, str] = {
    Fault.RETRY_AFTER_SECONDS: "pause",
    Fault.RETRY_AFTER_DATE: "pause",
    Fault.RETRY_AFTER_TOO_LONG: "pause",
    Fault.REFUSED: "refused",
    Fault.REDIRECT_UNRESOLVABLE: "dns",
}
FAMILY_HOSTS: Mapping[str, int] = {"pause": 32, "refused": 2, "dns": 2}
#: ``fails`` of a permanent fault: more attempts than any retry policy in these tests makes.
ALWAYS = 1_000_000
#: How many failing attempts a transient fault has; more than the retries means it stays.
TRANSIENT_FAILS = (1, 2, 3, ALWAYS)

#: The mix used unless a test gives its own: weights, mostly healthy, every fault present.
#: Slow faults are rare, since each of their attempts holds a slot for a timeout, and so
#: are Retry-After faults, since each of their answers pauses a host.
DEFAULT_MIX: Mapping[Fault, int] = {
    Fault.OK: 300,
    Fault.LARGE: 10,
    Fault.GZIP: 20,
    Fault.NOT_FOUND: 20,
    Fault.STATUS_500: 20,
    Fault.STATUS_502: 20,
    Fault.STATUS_503: 20,
    Fault.STATUS_504: 20,
    Fault.RETRY_AFTER_SECONDS: 6,
    Fault.RETRY_AFTER_DATE: 6,
    Fault.RETRY_AFTER_TOO_LONG: 2,
    Fault.RESET_BEFORE_HEADERS: 20,
    Fault.RESET_AFTER_HEADERS: 20,
    Fault.CLOSE_BEFORE_HEADERS: 20,
    Fault.TRUNCATED: 20,
    Fault.TRICKLE: 2,
    Fault.HANG_BEFORE_HEADERS: 2,
    Fault.HANG_AFTER_HEADERS: 2,
    Fault.BAD_CHUNKED: 15,
    Fault.BAD_STATUS_LINE: 15,
    Fault.BAD_HEADER: 15,
    Fault.HUGE_HEADER: 10,
    Fault.OVERSIZED: 10,
    Fault.GZIP_BOMB: 5,
    Fault.REDIRECT_LOOP: 10,
    Fault.REDIRECT_CROSS_HOST: 15,
    Fault.REDIRECT_UNRESOLVABLE: 10,
    Fault.REDIRECT_FTP: 10,
    Fault.NEVER_ACCEPT: 2,
    Fault.REFUSED: 10,
}

LARGE_SIZE = 96 * 1024  # over shoal's one-piece read size: read as a stream
BOMB_SIZE = 32 * 1024 * 1024
OVERSIZED_LENGTH = 1024**3
TRICKLE_EVERY_S = 1.0
HANG_S = 30.0  # a hanging handler gives up after this (the client's timeouts come first)
BACKLOG = 4
#: A name no resolver answers (RFC 6761); only used where the resolver has no fallback.
UNRESOLVABLE_HOST = "chaos.invalid"
#: How long a raw fault lets the client read what was sent before closing or resetting.
_LINGER_S = 0.02
GZIP_DECODED = b"gzip chaos " * 400


def ok_body(index: int) -> bytes:
    return b"chaos %d ok\n" % index


def landed_body(index: int) -> bytes:
    return b"chaos %d landed\n" % index


def status_body(status: int) -> bytes:
    return b"chaos status %d\n" % status


@cache
def large_body() -> bytes:
    return bytes(range(256)) * (LARGE_SIZE // 256)


@cache
def gzip_payload() -> bytes:
    return zlib.compress(GZIP_DECODED, 6, wbits=31)


@cache
def bomb_payload() -> bytes:
    """Gzip of :data:`BOMB_SIZE` zero bytes, built without holding them all at once."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    parts = [packer.compress(zeros) for _ in range(BOMB_SIZE // len(zeros))]
    parts.append(packer.flush())
    return b"".join(parts)


_STATUS_OF = {
    Fault.STATUS_500: 500,
    Fault.STATUS_502: 502,
    Fault.STATUS_503: 503,
    Fault.STATUS_504: 504,
    Fault.NOT_FOUND: 404,
    Fault.RETRY_AFTER_SECONDS: 429,
    Fault.RETRY_AFTER_DATE: 429,
    Fault.RETRY_AFTER_TOO_LONG: 429,
}


def status_of(fault: Fault) -> int | None:
    """The status a fault answers with, for the faults that answer with one."""
    return _STATUS_OF.get(fault)


@dataclass(frozen=True, slots=True)
class Plan:
    """What request ``index`` meets: ``fault`` on its first ``fails`` attempts, then 200.

    ``variant`` is a fault's own choice (which form of Retry-After, say).
    """

    index: int
    fault: Fault
    fails: int
    variant: int

    def fault_at(self, attempt: int) -> Fault:
        """The fault attempt number ``attempt`` (from 1) meets."""
        return self.fault if attempt <= self.fails else Fault.OK


class Chaos:
    """The seeded assignment of faults to request indices, and the URLs that carry them."""

    def __init__(self, seed: int, mix: Mapping[Fault, int] = DEFAULT_MIX, hosts: int = 8) -> None:
        if hosts < 2:
            raise ValueError("cross-host redirects need at least two host names")
        chosen = [(fault, weight) for fault, weight in mix.items() if weight > 0]
        if not chosen:
            raise ValueError("the mix holds no fault with a positive weight")
        self.seed = seed
        self.hosts = hosts
        self.mix = dict(chosen)
        self._faults = [fault for fault, _ in chosen]
        self._bounds: list[int] = []
        total = 0
        for _, weight in chosen:
            total += weight
            self._bounds.append(total)
        self._total = total

    def plan(self, index: int) -> Plan:
        digest = hashlib.blake2b(b"%d/%d" % (self.seed, index), digest_size=16).digest()
        pick = int.from_bytes(digest[:8], "big") % self._total
        fault = self._faults[bisect.bisect_right(self._bounds, pick)]
        fails = TRANSIENT_FAILS[digest[8] % len(TRANSIENT_FAILS)] if fault in TRANSIENT else ALWAYS
        return Plan(index, fault, fails, digest[9])

    def host(self, index: int) -> str:
        """The host name of request ``index``: its fault's family's, or ``h{k}.test``."""
        return self.host_of(self.plan(index))

    def host_of(self, plan: Plan) -> str:
        family = FAMILY.get(plan.fault)
        if family is None:
            return f"h{plan.index % self.hosts}.test"
        return f"{family}{plan.index % FAMILY_HOSTS[family]}.test"

    def landing_host(self, index: int) -> str:
        """The host a cross-host redirect of ``index`` leads to: always another one."""
        return f"h{(index + 1) % self.hosts}.test"


def _path_index(path: str) -> int | None:
    parts = path.split("/")
    if len(parts) in (3, 4) and parts[1] == "c" and parts[2].isdigit():
        if len(parts) == 4 and parts[3] != "landed":
            return None
        return int(parts[2])
    return None


def _host_of(request: Request) -> str:
    return (request.host or "").rsplit(":", 1)[0]


Handler = Callable[[Request, Plan], Awaitable[web.StreamResponse]]


class ChaosServer:
    """The server: ``await start()`` (or ``async with``), ``url(index)``, ``await stop()``.

    ``hits`` counts requests per ``(host, path)``; ``unexpected`` lists exceptions its
    handlers raised that are not part of a fault (a test asserts it stays empty).
    """

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.hits: Counter[tuple[str, str]] = Counter()
        self.unexpected: list[str] = []
        self.port = 0
        self.never_accept_port = 0
        self.refused_port = 0
        self._runner: web.AppRunner | None = None
        self._sockets: list[socket.socket] = []
        self._handlers: dict[Fault, Handler] = {
            Fault.OK: self._ok,
            Fault.LARGE: self._large,
            Fault.GZIP: self._gzip,
            Fault.NOT_FOUND: self._status,
            Fault.STATUS_500: self._status,
            Fault.STATUS_502: self._status,
            Fault.STATUS_503: self._status,
            Fault.STATUS_504: self._status,
            Fault.RETRY_AFTER_SECONDS: self._retry_after,
            Fault.RETRY_AFTER_DATE: self._retry_after,
            Fault.RETRY_AFTER_TOO_LONG: self._retry_after,
            Fault.RESET_BEFORE_HEADERS: self._reset_before_headers,
            Fault.RESET_AFTER_HEADERS: self._reset_after_headers,
            Fault.CLOSE_BEFORE_HEADERS: self._close_before_headers,
            Fault.TRUNCATED: self._truncated,
            Fault.TRICKLE: self._trickle,
            Fault.HANG_BEFORE_HEADERS: self._hang_before_headers,
            Fault.HANG_AFTER_HEADERS: self._hang_after_headers,
            Fault.BAD_CHUNKED: self._bad_chunked,
            Fault.BAD_STATUS_LINE: self._bad_status_line,
            Fault.BAD_HEADER: self._bad_header,
            Fault.HUGE_HEADER: self._huge_header,
            Fault.OVERSIZED: self._oversized,
            Fault.GZIP_BOMB: self._gzip_bomb,
            Fault.REDIRECT_LOOP: self._redirect_loop,
            Fault.REDIRECT_CROSS_HOST: self._redirect_cross_host,
            Fault.REDIRECT_UNRESOLVABLE: self._redirect_unresolvable,
            Fault.REDIRECT_FTP: self._redirect_ftp,
        }

    # -- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        if Fault.GZIP_BOMB in self.chaos.mix:
            await asyncio.to_thread(bomb_payload)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.never_accept_port = self._bind(listen=True)
        self.refused_port = self._bind(listen=False)

    def _bind(self, *, listen: bool) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sockets.append(sock)
        sock.bind(("127.0.0.1", 0))
        if listen:
            sock.listen(BACKLOG)  # and accept() is never called
        port: int = sock.getsockname()[1]
        return port

    async def stop(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- addresses -------------------------------------------------------------------------

    def url(self, index: int) -> str:
        """The URL of request ``index``: its host name, and the port its fault needs."""
        plan = self.chaos.plan(index)
        port = self.port
        if plan.fault is Fault.NEVER_ACCEPT:
            port = self.never_accept_port
        elif plan.fault is Fault.REFUSED:
            port = self.refused_port
        return f"http://{self.chaos.host_of(plan)}:{port}/c/{index}"

    def urls(self, count: int, start: int = 0) -> Iterator[str]:
        return (self.url(index) for index in range(start, start + count))

    def landing_url(self, index: int) -> str:
        return f"http://{self.chaos.landing_host(index)}:{self.port}/c/{index}/landed"

    def unresolvable_url(self, index: int) -> str:
        return f"http://{UNRESOLVABLE_HOST}:{self.port}/c/{index}"

    @staticmethod
    def ftp_url(index: int) -> str:
        return f"ftp://h0.test/c/{index}"

    # -- serving ---------------------------------------------------------------------------

    async def _dispatch(self, request: Request) -> web.StreamResponse:
        path = request.path
        index = _path_index(path)
        if index is None:
            return web.Response(status=400, text="not a chaos path")
        key = (_host_of(request), path)
        self.hits[key] += 1
        if path.endswith("/landed"):
            return web.Response(body=landed_body(index), content_type="text/plain")
        plan = self.chaos.plan(index)
        fault = plan.fault_at(self.hits[key])
        try:
            return await self._handlers[fault](request, plan)
        except asyncio.CancelledError:
            raise  # the client left (a timeout): aiohttp cancels the handler
        except web.HTTPException:
            raise  # a redirect: aiohttp's way of answering with one
        except ConnectionError:
            # Writing to a client that already gave up (it timed out): part of the fault.
            return web.Response(status=499)
        except Exception as exc:
            self.unexpected.append(f"{fault} {path}: {type(exc).__name__}: {exc}")
            raise

    async def _ok(self, request: Request, plan: Plan) -> web.StreamResponse:
        return web.Response(body=ok_body(plan.index), content_type="text/plain")

    async def _large(self, request: Request, plan: Plan) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        body = large_body()
        for start in range(0, len(body), 16 * 1024):
            await response.write(body[start : start + 16 * 1024])
        await response.write_eof()
        return response

    async def _gzip(self, request: Request, plan: Plan) -> web.StreamResponse:
        return web.Response(
            body=gzip_payload(),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
        )

    async def _status(self, request: Request, plan: Plan) -> web.StreamResponse:
        status = _STATUS_OF[plan.fault]
        return web.Response(status=status, body=status_body(status), content_type="text/plain")

    async def _retry_after(self, request: Request, plan: Plan) -> web.StreamResponse:
        value = retry_after_value(plan)
        return web.Response(
            status=429,
            body=status_body(429),
            content_type="text/plain",
            headers={"Retry-After": value},
        )

    async def _reset_before_headers(self, request: Request, plan: Plan) -> web.StreamResponse:
        _reset(request)
        return web.Response()

    async def _reset_after_headers(self, request: Request, plan: Plan) -> web.StreamResponse:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n"
        _transport(request).write(head + b"0123456789")
        await asyncio.sleep(_LINGER_S)
        _reset(request)
        return web.Response()

    async def _close_before_headers(self, request: Request, plan: Plan) -> web.StreamResponse:
        _transport(request).close()
        return web.Response()

    async def _truncated(self, request: Request, plan: Plan) -> web.StreamResponse:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n"
        return await _raw(request, head + b"0123456789")

    async def _trickle(self, request: Request, plan: Plan) -> web.StreamResponse:
        count = 60
        response = web.StreamResponse(headers={"Content-Length": str(count)})
        await response.prepare(request)
        for _ in range(count):  # at most a minute; the client's read timeout ends it first
            await response.write(b"t")
            await asyncio.sleep(TRICKLE_EVERY_S)
        return response

    async def _hang_before_headers(self, request: Request, plan: Plan) -> web.StreamResponse:
        await asyncio.sleep(HANG_S)
        return web.Response(text="too late")

    async def _hang_after_headers(self, request: Request, plan: Plan) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await asyncio.sleep(HANG_S)
        return response

    async def _bad_chunked(self, request: Request, plan: Plan) -> web.StreamResponse:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        return await _raw(request, head + b"5\r\nhello\r\nZZZ\r\nbroken\r\n")

    async def _bad_status_line(self, request: Request, plan: Plan) -> web.StreamResponse:
        return await _raw(request, b"HTTP/1.1 WHAT NOPE\r\n\r\n")

    async def _bad_header(self, request: Request, plan: Plan) -> web.StreamResponse:
        return await _raw(
            request, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nthis is no header\r\n\r\nok"
        )

    async def _huge_header(self, request: Request, plan: Plan) -> web.StreamResponse:
        line = b"X-Huge: " + b"h" * 40_000 + b"\r\n"
        return await _raw(request, b"HTTP/1.1 200 OK\r\n" + line + b"Content-Length: 0\r\n\r\n")

    async def _oversized(self, request: Request, plan: Plan) -> web.StreamResponse:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % OVERSIZED_LENGTH
        return await _raw(request, head + b"x" * 1024)

    async def _gzip_bomb(self, request: Request, plan: Plan) -> web.StreamResponse:
        return web.Response(
            body=bomb_payload(),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
        )

    async def _redirect_loop(self, request: Request, plan: Plan) -> web.StreamResponse:
        raise web.HTTPFound(request.path)

    async def _redirect_cross_host(self, request: Request, plan: Plan) -> web.StreamResponse:
        raise web.HTTPFound(self.landing_url(plan.index))

    async def _redirect_unresolvable(self, request: Request, plan: Plan) -> web.StreamResponse:
        raise web.HTTPFound(self.unresolvable_url(plan.index))

    async def _redirect_ftp(self, request: Request, plan: Plan) -> web.StreamResponse:
        raise web.HTTPFound(self.ftp_url(plan.index))


def retry_after_value(plan: Plan, now: float | None = None) -> str:
    """The Retry-After header a 429 fault sends (it varies with ``plan.variant``)."""
    now = time.time() if now is None else now
    if plan.fault is Fault.RETRY_AFTER_SECONDS:
        return "1" if plan.variant % 4 == 0 else "0"
    if plan.fault is Fault.RETRY_AFTER_DATE:
        # At most a second away (the date has whole seconds), or a minute past.
        ahead = 1.0 if plan.variant % 4 == 0 else -60.0
        return email.utils.formatdate(now + ahead, usegmt=True)
    if plan.variant % 2:
        return email.utils.formatdate(now + 3600, usegmt=True)
    return "3600"


def _transport(request: Request) -> asyncio.Transport:
    transport = request.transport
    assert transport is not None
    return transport


def _reset(request: Request) -> None:
    """Close the connection with a RST rather than a FIN."""
    transport = _transport(request)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _raw(request: Request, data: bytes) -> web.StreamResponse:
    """Write bytes aiohttp would never produce, let the client read them, then close."""
    transport = _transport(request)
    transport.write(data)
    await asyncio.sleep(_LINGER_S)
    transport.close()
    return web.Response()


async def _serve(seed: int, requests: int) -> None:
    async with ChaosServer(Chaos(seed)) as server:
        print(f"http {server.port} never-accept {server.never_accept_port}", flush=True)
        print(f"refused {server.refused_port}", flush=True)
        for index in range(requests):
            print(f"{server.url(index)}  {server.chaos.plan(index).fault}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the chaos faults on 127.0.0.1.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=20, help="URLs to print")
    options = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(options.seed, options.requests))


if __name__ == "__main__":
    main()
