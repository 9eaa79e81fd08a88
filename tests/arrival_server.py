"""The misbehaving server (:mod:`tests.servers`) in a process of its own, for tests that
measure when requests arrive.

A server on the test's own event loop stamps an arrival when that loop gets to it: a stall
of the loop (the client's work, a garbage collection) delays the stamp of one request and
not the next, and a gap measured there can come out shorter than the gap the client left.
Here the server's loop does nothing else, so the stamps are the arrivals. The stamps are
``time.monotonic()`` (the system's monotonic clock, one for every process on the machine,
so comparable with the test's own).

``python -m tests.arrival_server`` prints ``PORT CONTROL_PORT`` and serves until stdin
closes. The control port answers ``GET /log`` (the server's log as JSON) and
``POST /forget?host=H`` (drop what it saw of host ``H``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.servers import HostLoad, Misbehaving, ServerLog, serve


def _dump(log: ServerLog) -> bytes:
    return orjson.dumps(
        {
            "hosts": {
                host: {
                    "in_flight": load.in_flight,
                    "peak": load.peak,
                    "requests": load.requests,
                    "times": load.times,
                }
                for host, load in log.hosts.items()
            },
            "paths": dict(log.paths),
            "in_flight": log.in_flight,
            "peak": log.peak,
            "headers": log.headers,
        },
        option=orjson.OPT_NON_STR_KEYS,  # header names are multidict's ``istr``
    )


def _load(data: dict[str, Any]) -> ServerLog:
    log = ServerLog()
    for host, load in data["hosts"].items():
        log.hosts[host] = HostLoad(**load)
    log.paths.update(data["paths"])
    log.in_flight, log.peak, log.headers = data["in_flight"], data["peak"], data["headers"]
    return log


class ArrivalServer:
    """``await start()``; ``url(path, host=...)`` as :class:`Misbehaving`'s; ``await
    read_log()`` for what the server saw so far; ``await forget(host)``; ``await stop()``."""

    def __init__(self) -> None:
        self.port = 0
        self._control = 0
        self._process: asyncio.subprocess.Process | None = None

    def url(self, path: str, host: str = "a.test") -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.arrival_server",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 30)
        assert line, "the arrival server ended before saying its ports"
        self.port, self._control = (int(part) for part in line.split())

    async def read_log(self) -> ServerLog:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self._control}/log") as response,
        ):
            assert response.status == 200
            return _load(orjson.loads(await response.read()))

    async def forget(self, host: str) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{self._control}/forget", params={"host": host}) as r,
        ):
            assert r.status == 200

    async def stop(self) -> None:
        process = self._process
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()  # the server's signal to end
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        assert process.returncode == 0, process.returncode


async def _main() -> None:
    server = Misbehaving()
    await server.start()

    async def log(request: web.Request) -> web.StreamResponse:
        return web.Response(body=_dump(server.log), content_type="application/json")

    async def forget(request: web.Request) -> web.StreamResponse:
        server.log.hosts.pop(request.query["host"], None)
        return web.Response(text="forgotten")

    control = web.Application()
    control.router.add_get("/log", log)
    control.router.add_post("/forget", forget)
    runner, port = await serve(control)
    print(server.port, port, flush=True)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, sys.stdin.buffer.read)  # until stdin closes
    finally:
        await runner.cleanup()
        await server.stop()


if __name__ == "__main__":
    asyncio.run(_main())
