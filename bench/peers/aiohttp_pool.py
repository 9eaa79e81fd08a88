"""Peer: a bare aiohttp worker pool (K workers on a bounded queue, uvloop), reading URLs
from a file and reading each body fully. The baseline shoal's single process is held to."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import uvloop


async def main(path: str, workers: int) -> int:
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=workers * 2)
    failures = 0

    async def work(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while (url := await queue.get()) is not None:
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status >= 400:
                        failures += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                failures += 1

    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(work(session)) for _ in range(workers)]
        # A local file read lazily, line by line: memory stays flat whatever its length.
        with open(path) as file:  # noqa: ASYNC230
            for line in file:
                await queue.put(line.strip())
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    return failures


if __name__ == "__main__":
    failed = uvloop.run(main(sys.argv[1], int(sys.argv[2])))
    print(f"failures={failed}", file=sys.stderr)
