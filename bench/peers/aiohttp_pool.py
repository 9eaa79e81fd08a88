"""Peer: a bare aiohttp worker pool (K workers on a bounded queue, uvloop), reading URLs
from a file and reading each body fully. The baseline shoal's single process is held to.

:func:`run_pool` is the pool itself; the other ``aiohttp_pool_*`` peers run it with their
own handling of each response.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop
from aiohttp.abc import AbstractResolver, ResolveResult

#: What a worker does with a response: (its line number in the file, its URL, the response).
Handle = Callable[[int, str, aiohttp.ClientResponse], Awaitable[None]]


async def read_body(number: int, url: str, response: aiohttp.ClientResponse) -> None:
    await response.read()


class Loopback(AbstractResolver):
    """Every host name is 127.0.0.1 (the many-hosts workload's names, h0.test, ...)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


async def run_pool(
    path: str, workers: int, handle: Handle = read_body, *, loopback: bool = False
) -> int:
    """Fetch every URL in ``path`` with ``workers`` workers; the count of failures (an
    exception, or a status of 400 and above). ``loopback`` sends every name to 127.0.0.1."""
    queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(maxsize=workers * 2)
    failures = 0

    async def work(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while (item := await queue.get()) is not None:
            number, url = item
            try:
                async with session.get(url) as response:
                    await handle(number, url, response)
                    if response.status >= 400:
                        failures += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                failures += 1

    connector = aiohttp.TCPConnector(limit=workers, resolver=Loopback() if loopback else None)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(work(session)) for _ in range(workers)]
        # A local file read lazily, line by line: memory stays flat whatever its length.
        with open(path) as file:  # noqa: ASYNC230
            for number, line in enumerate(file):
                await queue.put((number, line.strip()))
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    return failures


def report(failures: int) -> None:
    print(f"failures={failures}", file=sys.stderr)


if __name__ == "__main__":
    loopback = sys.argv[3:] == ["loopback"]
    report(uvloop.run(run_pool(sys.argv[1], int(sys.argv[2]), loopback=loopback)))
