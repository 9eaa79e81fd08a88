"""A real aiohttp server on 127.0.0.1 with named misbehaviours, for the tests.

Every route is a misbehaviour a bulk fetcher meets in the wild. The server counts requests
and tracks in-flight requests per host name (the ``Host`` header, without the port), so
tests can assert the caps shoal promises from the server's side.

Routes (``key`` makes state per test; query parameters tune each one):

* ``/ok`` — 200 with ``size`` bytes (default 2).
* ``/delay?s=0.2`` — 200 after a delay.
* ``/hang`` — never answers (the test's timeouts end it).
* ``/hang-body`` — sends headers, then never sends the body.
* ``/trickle?n=100&every=0.5`` — one byte every ``every`` seconds.
* ``/drop`` — closes the connection without answering.
* ``/partial`` — promises 1000 bytes, sends 10, closes.
* ``/bad-chunk`` — a broken chunked encoding.
* ``/bad-status`` — an invalid status line.
* ``/huge-header`` — a header line longer than shoal accepts.
* ``/flaky/{key}?fail=2&status=503`` — fails ``fail`` times, then 200.
* ``/retry-after/{key}?status=429&after=1&fail=1&date=0`` — ``status`` with Retry-After
  (seconds, or an HTTP date when ``date=1``), ``fail`` times, then 200.
* ``/redirect/{n}`` — a chain of ``n`` redirects ending at ``/ok``.
* ``/loop`` — redirects to itself forever.
* ``/redirect-to?url=...`` — redirects to any URL (other host, other scheme).
* ``/big?size=...`` — a body of ``size`` bytes.
* ``/gzip-bomb?size=...`` — a gzip body that inflates to ``size`` bytes.
* ``/status/{code}`` — that status.
* ``/echo`` — a JSON echo of the method, headers and body.
* ``/cookie/set?name=n&value=v&domain=d&to=URL`` — sets a cookie (a ``Domain`` when ``d``
  is given), then redirects to ``to`` (200 without it).
* ``/cookie/check?name=n`` — 200 when the request carries cookie ``n``, else 403: a site
  that sets a cookie and redirects to check it.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.web_request import Request

Handler = Callable[[Request], Awaitable[web.StreamResponse]]


@dataclass
class HostLoad:
    """What the server saw of one host name."""

    in_flight: int = 0
    peak: int = 0
    requests: int = 0
    times: list[float] = field(default_factory=list)


class ServerLog:
    """Counts and in-flight tracking, per host and per path."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostLoad] = defaultdict(HostLoad)
        self.paths: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0
        self.headers: list[dict[str, str]] = []

    @property
    def total(self) -> int:
        return sum(self.paths.values())


def _host(request: Request) -> str:
    return (request.host or "").rsplit(":", 1)[0]


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1 at a free port; the runner (``cleanup()`` stops it) and
    the port."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


class Misbehaving:
    """The server. ``await start()``, use ``url(path, host=...)``, ``await stop()``."""

    def __init__(self) -> None:
        self.log = ServerLog()
        self._state: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str, host: str = "a.test") -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._track])
        routes = [
            ("/ok", self.ok),
            ("/delay", self.delay),
            ("/hang", self.hang),
            ("/hang-body", self.hang_body),
            ("/trickle", self.trickle),
            ("/drop", self.drop),
            ("/partial", self.partial),
            ("/bad-chunk", self.bad_chunk),
            ("/bad-status", self.bad_status),
            ("/huge-header", self.huge_header),
            ("/flaky/{key}", self.flaky),
            ("/retry-after/{key}", self.retry_after),
            ("/redirect/{n}", self.redirect),
            ("/loop", self.loop),
            ("/redirect-to", self.redirect_to),
            ("/big", self.big),
            ("/gzip-bomb", self.gzip_bomb),
            ("/status/{code}", self.status),
            ("/echo", self.echo),
            ("/cookie/set", self.cookie_set),
            ("/cookie/check", self.cookie_check),
        ]
        for path, handler in routes:
            app.router.add_route("*", path, handler)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _track(self, request: Request, handler: Handler) -> web.StreamResponse:
        log = self.log
        host = log.hosts[_host(request)]
        host.in_flight += 1
        host.requests += 1
        host.peak = max(host.peak, host.in_flight)
        host.times.append(time.monotonic())
        log.in_flight += 1
        log.peak = max(log.peak, log.in_flight)
        log.paths[request.path] += 1
        log.headers.append(dict(request.headers))
        try:
            return await handler(request)
        finally:
            host.in_flight -= 1
            log.in_flight -= 1

    # -- the misbehaviours -----------------------------------------------------------------

    async def ok(self, request: Request) -> web.StreamResponse:
        size = int(request.query.get("size", 2))
        return web.Response(body=b"o" * size if size != 2 else b"ok", content_type="text/plain")

    async def delay(self, request: Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("s", 0.2)))
        return web.Response(text="late")

    async def hang(self, request: Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        return web.Response(text="never")

    async def hang_body(self, request: Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "100"})
        await response.prepare(request)
        await asyncio.sleep(3600)
        return response

    async def trickle(self, request: Request) -> web.StreamResponse:
        count = int(request.query.get("n", 100))
        every = float(request.query.get("every", 0.5))
        response = web.StreamResponse(headers={"Content-Length": str(count)})
        await response.prepare(request)
        for _ in range(count):
            await response.write(b"t")
            await asyncio.sleep(every)
        return response

    async def drop(self, request: Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    async def _raw(self, request: Request, data: bytes) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        transport.write(data)
        await asyncio.sleep(0.05)
        transport.close()
        return web.Response()

    async def partial(self, request: Request) -> web.StreamResponse:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n"
        return await self._raw(request, head + b"0123456789")

    async def bad_chunk(self, request: Request) -> web.StreamResponse:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        return await self._raw(request, head + b"5\r\nhello\r\nZZZ\r\nbroken\r\n")

    async def bad_status(self, request: Request) -> web.StreamResponse:
        return await self._raw(request, b"HTTP/1.1 WHAT NOPE\r\n\r\n")

    async def huge_header(self, request: Request) -> web.StreamResponse:
        line = b"X-Huge: " + b"h" * 40_000 + b"\r\n"
        return await self._raw(
            request, b"HTTP/1.1 200 OK\r\n" + line + b"Content-Length: 0\r\n\r\n"
        )

    async def flaky(self, request: Request) -> web.StreamResponse:
        key = "flaky:" + request.match_info["key"]
        self._state[key] += 1
        if self._state[key] <= int(request.query.get("fail", 2)):
            return web.Response(status=int(request.query.get("status", 503)), text="flaky")
        return web.Response(text="recovered")

    async def retry_after(self, request: Request) -> web.StreamResponse:
        key = "retry-after:" + request.match_info["key"]
        self._state[key] += 1
        if self._state[key] <= int(request.query.get("fail", 1)):
            after = float(request.query.get("after", 1))
            if request.query.get("date") == "1":
                value = email.utils.formatdate(time.time() + after, usegmt=True)
            else:
                value = str(int(after))
            status = int(request.query.get("status", 429))
            return web.Response(status=status, text="wait", headers={"Retry-After": value})
        return web.Response(text="thanks for waiting")

    async def redirect(self, request: Request) -> web.StreamResponse:
        remaining = int(request.match_info["n"])
        raise web.HTTPFound("/ok" if remaining <= 1 else f"/redirect/{remaining - 1}")

    async def loop(self, request: Request) -> web.StreamResponse:
        raise web.HTTPFound("/loop")

    async def redirect_to(self, request: Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["url"])

    async def cookie_set(self, request: Request) -> web.StreamResponse:
        query = request.query
        target = query.get("to")
        name, value = query.get("name", "session"), query.get("value", "1")
        domain = query.get("domain")
        if target is None:
            response = web.Response(text="set")
            response.set_cookie(name, value, domain=domain)
            return response
        found = web.HTTPFound(target)
        found.set_cookie(name, value, domain=domain)
        raise found

    async def cookie_check(self, request: Request) -> web.StreamResponse:
        name = request.query.get("name", "session")
        if name not in request.cookies:
            raise web.HTTPForbidden(text=f"no cookie {name}")
        return web.Response(text=f"{name}={request.cookies[name]}")

    async def big(self, request: Request) -> web.StreamResponse:
        size = int(request.query.get("size", 1024 * 1024))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        chunk = b"b" * 65536
        sent = 0
        while sent < size:
            piece = chunk[: size - sent]
            await response.write(piece)
            sent += len(piece)
        return response

    async def gzip_bomb(self, request: Request) -> web.StreamResponse:
        size = int(request.query.get("size", 64 * 1024 * 1024))
        body = _zeros_gzip(size)
        return web.Response(
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
        )

    async def status(self, request: Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def echo(self, request: Request) -> web.StreamResponse:
        body = await request.text()
        return web.json_response(
            {"method": request.method, "headers": dict(request.headers), "body": body}
        )


_BOMBS: dict[int, bytes] = {}


def _zeros_gzip(size: int) -> bytes:
    if size not in _BOMBS:
        _BOMBS[size] = gzip.compress(b"\0" * size, compresslevel=9)
    return _BOMBS[size]
