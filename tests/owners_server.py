"""A test server that knows which worker sent each request, for jobs shared by workers.

It listens on several loopback addresses at one port; each worker resolves the test host
names to an address of its own (``--resolve '*.test:127.0.0.N'``), so the address a
request came in on names its sender. Every request is logged with its host, sender, path
and start and end times, which lets a test check, from the server's side, each host's
in-flight cap and that no two workers ever sent to one host at the same time.

Routes: ``/work?s=0.05`` (200 after a delay; held back while ``work_gate`` is clear),
``/retry-after/{key}?after=3&fail=1`` (429 with Retry-After, ``fail`` times; held back
while ``gate`` is clear), ``/hang`` (never answers), ``/status/{code}``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_request import Request

from tests.servers import Handler


@dataclass
class Visit:
    """One request as the server saw it."""

    host: str
    owner: str
    path: str
    start: float
    end: float = float("inf")
    status: int = 0


class OwnersServer:
    """``await start()``; ``address(k)`` is worker ``k``'s; ``url(path, host)``."""

    def __init__(self, workers: int) -> None:
        self.addresses = [f"127.0.0.{10 + k}" for k in range(workers)]
        self.visits: list[Visit] = []
        self.in_flight: Counter[str] = Counter()
        self.peaks: Counter[str] = Counter()
        self._state: Counter[str] = Counter()
        #: ``/retry-after`` answers only once this is set (a test may hold it back).
        self.gate = asyncio.Event()
        self.gate.set()
        #: ``/work`` answers only once this is set (a test may hold it back).
        self.work_gate = asyncio.Event()
        self.work_gate.set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str, host: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def resolve(self, worker: int) -> tuple[str, str]:
        """The ``--resolve`` option that sends worker ``worker``'s requests to its address."""
        return ("--resolve", f"*.test:{self.addresses[worker]}")

    async def start(self) -> None:
        app = web.Application(middlewares=[self._log])
        app.router.add_get("/work", self.work)
        app.router.add_get("/retry-after/{key}", self.retry_after)
        app.router.add_get("/hang", self.hang)
        app.router.add_get("/status/{code}", self.status)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        first = web.TCPSite(self._runner, self.addresses[0], 0)
        await first.start()
        self.port = self._runner.addresses[0][1]
        for address in self.addresses[1:]:
            await web.TCPSite(self._runner, address, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _log(self, request: Request, handler: Handler) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0]
        assert request.transport is not None
        owner = request.transport.get_extra_info("sockname")[0]
        visit = Visit(host, owner, request.path_qs, time.monotonic())
        self.visits.append(visit)
        self.in_flight[host] += 1
        self.peaks[host] = max(self.peaks[host], self.in_flight[host])
        try:
            response = await handler(request)
            visit.status = response.status
            return response
        finally:
            visit.end = time.monotonic()
            self.in_flight[host] -= 1

    async def work(self, request: Request) -> web.StreamResponse:
        await self.work_gate.wait()
        await asyncio.sleep(float(request.query.get("s", 0.05)))
        return web.Response(text="done")

    async def retry_after(self, request: Request) -> web.StreamResponse:
        await self.gate.wait()
        key = request.match_info["key"]
        self._state[key] += 1
        if self._state[key] <= int(request.query.get("fail", 1)):
            after = request.query.get("after", "3")
            return web.Response(status=429, text="wait", headers={"Retry-After": after})
        return web.Response(text="thanks for waiting")

    async def hang(self, request: Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        return web.Response(text="never")

    async def status(self, request: Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]), text="status")

    # -- what the tests check ------------------------------------------------------------

    def overlaps(self) -> list[tuple[Visit, Visit]]:
        """Pairs of requests to one host from two workers that were in flight together."""
        by_host: dict[str, list[Visit]] = defaultdict(list)
        for visit in self.visits:
            by_host[visit.host].append(visit)
        found = []
        for visits in by_host.values():
            visits.sort(key=lambda visit: visit.start)
            for n, visit in enumerate(visits):
                for later in visits[n + 1 :]:
                    if later.start >= visit.end:
                        break
                    if later.owner != visit.owner:
                        found.append((visit, later))
        return found

    def sent(self, path_prefix: str = "/work") -> Counter[str]:
        """How many times each path (with its query) was requested."""
        return Counter(v.path for v in self.visits if v.path.startswith(path_prefix))
