"""The live dashboard: a page, a JSON API, controls and Prometheus metrics, served from
inside a run with aiohttp.web.

Everything it shows is read from the engine's ``statistics()`` snapshots (and its busiest
hosts); its controls call the engine's public ``pause``, ``resume`` and ``stop``. Routes:

* ``GET /`` the page (package data: it and the vendored uPlot, with its licence, need no
  network); ``GET /api/events`` the same snapshot every second as server-sent events;
* ``GET /api/stats``, ``GET /api/hosts``: JSON; ``GET /metrics``: the Prometheus text;
* ``GET /api/history``: the charts' points so far (rates once a second, the last
  ``HISTORY`` of them, kept from the moment the dashboard opens), so a page opened late
  shows the run's recent past at once; each event carries the newest few;
* ``POST /api/pause``, ``/api/resume``, ``/api/stop``. No GET changes anything.

Security: it listens on 127.0.0.1 unless told otherwise, and any other address needs a
token (:class:`ConfigError` of ``dashboard_token`` without one). With a token every route
needs it, as ``Authorization: Bearer TOKEN`` or the cookie that ``/?token=TOKEN`` sets. A
request whose ``Host`` is neither a loopback name, nor the address bound, nor (when bound
to every interface) an IP address or this machine's name is refused (DNS rebinding), and
so is a POST whose ``Origin`` is another site (cross-site request forgery).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from importlib import resources
from typing import Any, Protocol, Self

import orjson
from aiohttp import web
from aiohttp_sse import sse_response
from yarl import URL

from shoal.errors import ConfigError
from shoal.reporting.metrics import exposition
from shoal.reporting.statistics import Statistics
from shoal.scheduling import HostState

#: The files the page loads, by the name it asks for: (package file, content type).
STATIC = {
    "dashboard.js": ("dashboard.js", "text/javascript"),
    "dashboard.css": ("dashboard.css", "text/css"),
    "uPlot.iife.min.js": ("uPlot.iife.min.js", "text/javascript"),
    "uPlot.min.css": ("uPlot.min.css", "text/css"),
}
TOKEN_COOKIE = "shoal_dashboard_token"
#: How often the page is sent a snapshot (seconds), and how many hosts it lists.
EVERY_S = 1.0
TOP_HOSTS = 20
#: How many chart points the dashboard keeps (one a second: five minutes), and how many of
#: the newest each event carries (a page adds those it has not seen).
HISTORY = 300
_TAIL = 2
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Controlled(Protocol):
    """What the dashboard needs of an engine."""

    def statistics(self) -> Statistics: ...
    def busiest_hosts(self, limit: int = ...) -> tuple[HostState, ...]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop(self) -> None: ...


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def snapshot_json(stats: Statistics, busiest: tuple[HostState, ...]) -> dict[str, Any]:
    """What ``/api/stats`` and the events carry: the snapshot and what the page derives."""
    data = stats.to_dict()
    data.update(
        requests_per_s=stats.requests_per_s,
        bytes_per_s=stats.bytes_per_s,
        remaining=stats.remaining,
        eta_s=stats.eta_s,
        latency_p50_ms=stats.latency.p50_ms,
        latency_p90_ms=stats.latency.p90_ms,
        latency_p99_ms=stats.latency.p99_ms,
        busiest=[asdict(host) for host in busiest],
    )
    return data


class History:
    """The charts' points: the job's results and bytes per second between readings taken
    once a second, the newest ``HISTORY`` of them (a bounded ring)."""

    def __init__(self, size: int = HISTORY) -> None:
        self._points: deque[tuple[float, float, float]] = deque(maxlen=size)
        self._last: tuple[float, int, int] | None = None

    def sample(self, stats: Statistics, at: float | None = None) -> None:
        at = time.time() if at is None else at
        done = stats.done
        if self._last is not None:
            then, before, size = self._last
            span = at - then
            if span > 0:
                per_s = max(0, done - before) / span
                self._points.append((at, per_s, max(0, stats.bytes - size) / span))
        self._last = (at, done, stats.bytes)

    def points(self, newest: int | None = None) -> list[tuple[float, float, float]]:
        """``(epoch seconds, per second, bytes per second)``, oldest first."""
        points = list(self._points)
        return points if newest is None else points[-newest:]


class Dashboard:
    """Serves the dashboard of ``engine`` on ``host:port`` (port 0: a free one) while it
    is open; ``url`` is where (with the token's query when there is one)."""

    def __init__(
        self,
        engine: Controlled,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ConfigError(
                "dashboard_token",
                f"the dashboard on {host} (not a loopback address) needs a token",
            )
        self._engine = engine
        self._host = host
        self._port = port
        self._token = token or None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._history = History()
        self._sampler: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        shown = f"[{self._host}]" if ":" in self._host else self._host
        base = f"http://{shown}:{self.port}/"
        return base if self._token is None else f"{base}?token={self._token}"

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/stats", self._stats)
        app.router.add_get("/api/hosts", self._hosts)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/history", self._history_route)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/api/pause", self._control(self._engine.pause))
        app.router.add_post("/api/resume", self._control(self._engine.resume))
        app.router.add_post("/api/stop", self._control(self._engine.stop))
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                "dashboard", f"cannot listen on {self._host}:{self._port}: {exc.strerror}"
            ) from exc
        self._runner = runner
        self.port = runner.addresses[0][1]
        self._history.sample(self._engine.statistics())
        self._sampler = asyncio.create_task(self._sample(), name="shoal-dashboard-history")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing.set()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the guard ---------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        name = URL(f"http://{request.host}").host or ""
        if not self._host_allowed(name):
            raise web.HTTPForbidden(text=f"refused: Host {request.host!r} is not this dashboard")
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("Origin")
            if origin is not None and not self._same_origin(origin, request.host):
                raise web.HTTPForbidden(text=f"refused: a request from another site ({origin})")
        if self._token is not None:
            given = request.query.get("token")
            if request.path == "/" and given is not None and self._matches(given):
                found = web.HTTPFound("/")
                found.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="Strict")
                raise found
            if not self._authorised(request):
                raise web.HTTPUnauthorized(
                    text="refused: this dashboard needs its token",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await handler(request)

    def _host_allowed(self, name: str) -> bool:
        if is_loopback(name) or name == self._host:
            return True
        if self._host in ("0.0.0.0", "::", ""):  # every interface: addresses, our names
            return _is_ip(name) or name in (socket.gethostname(), socket.getfqdn())
        return False

    @staticmethod
    def _same_origin(origin: str, host: str) -> bool:
        try:
            given = URL(origin)
        except ValueError:
            return False
        return given.scheme == "http" and given.raw_authority == host

    def _matches(self, given: str) -> bool:
        assert self._token is not None
        return hmac.compare_digest(given.encode(), self._token.encode())

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and self._matches(header[7:].strip()):
            return True
        cookie = request.cookies.get(TOKEN_COOKIE)
        return cookie is not None and self._matches(cookie)

    # -- the routes --------------------------------------------------------------------------

    async def _sample(self) -> None:
        """Take the charts' reading once a second while the dashboard is open."""
        while not self._closing.is_set():
            await asyncio.sleep(EVERY_S)
            self._history.sample(self._engine.statistics())

    def _snapshot(self) -> dict[str, Any]:
        engine = self._engine
        return snapshot_json(engine.statistics(), engine.busiest_hosts(TOP_HOSTS))

    async def _history_route(self, request: web.Request) -> web.StreamResponse:
        return _json({"points": self._history.points()})

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_read("dashboard.html"), content_type="text/html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        found = STATIC.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        name, kind = found
        return web.Response(body=_read(name), content_type=kind)

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return _json(self._snapshot())

    async def _hosts(self, request: web.Request) -> web.StreamResponse:
        engine = self._engine
        return _json(
            {
                "busiest": [asdict(host) for host in engine.busiest_hosts(TOP_HOSTS)],
                "notable": [asdict(host) for host in engine.statistics().hosts],
            }
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        async with sse_response(request) as events:
            while events.is_connected() and not self._closing.is_set():
                data = self._snapshot()
                data["chart"] = self._history.points(_TAIL)
                await events.send(orjson.dumps(data).decode(), event="stats")
                try:
                    await asyncio.wait_for(self._closing.wait(), EVERY_S)
                except TimeoutError:
                    continue
        return events

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        body = exposition(self._engine.statistics)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    def _control(self, action: Callable[[], None]) -> Handler:
        async def control(request: web.Request) -> web.StreamResponse:
            action()
            stats = self._engine.statistics()
            return _json({"paused": stats.paused, "interrupted": stats.interrupted})

        return control


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _read(name: str) -> bytes:
    return resources.files("shoal.reporting").joinpath("static", name).read_bytes()
