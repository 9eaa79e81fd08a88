"""How close ``--per-host-rate`` comes to the rate asked, against a fast local server.

    python bench/rate.py [--seconds 5] [--rates 100,200,300]

For each rate, runs ``shoal fetch`` (a subprocess, so the server below has its own loop)
over ``rate × seconds`` URLs of one host on 127.0.0.1, with ``--per-host-rate RATE/s`` and
enough workers that only the rate holds them back. The server answers at once and notes
when each request arrives; the achieved rate is the requests after the first over the time
from the first arrival to the last. Prints achieved/asked per rate. Traffic goes only to
127.0.0.1; every run is bounded (a run that overstays three times its expected length is
killed and reported).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from aiohttp import web


async def measure(rate: float, seconds: float) -> tuple[int, float] | None:
    """Arrivals seen and the achieved rate of one run, or ``None`` if it overstayed."""
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    async def answer(request: web.Request) -> web.Response:
        arrivals.append(loop.time())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        count = max(2, round(rate * seconds))
        urls = "".join(f"http://127.0.0.1:{port}/r{n}\n" for n in range(count)).encode()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shoal",
            "fetch",
            "--per-host-rate",
            f"{rate:g}/s",
            "--per-host",
            "8",
            "-c",
            "64",
            "--progress",
            "off",
            "-q",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(urls), 3 * seconds + 10)
        except TimeoutError:
            process.kill()
            await process.wait()
            return None
        if process.returncode != 0:
            raise SystemExit(f"shoal exited {process.returncode}: {err.decode()}")
    finally:
        await runner.cleanup()
    span = arrivals[-1] - arrivals[0]
    return len(arrivals), (len(arrivals) - 1) / span if span > 0 else float("inf")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--rates", default="100,200,300", help="rates per second to try")
    args = parser.parse_args()
    print(f"{'asked/s':>8} {'requests':>9} {'achieved/s':>11} {'achieved/asked':>15}")
    for rate in (float(part) for part in args.rates.split(",")):
        measured = await measure(rate, args.seconds)
        if measured is None:
            print(f"{rate:8g} {'':>9} {'overstayed':>11}")
            continue
        seen, achieved = measured
        print(f"{rate:8g} {seen:9d} {achieved:11.1f} {achieved / rate:15.3f}")


if __name__ == "__main__":
    asyncio.run(main())
