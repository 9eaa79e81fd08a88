"""Peer: httpx.AsyncClient with K workers on a bounded queue (anyio on asyncio with uvloop),
reading each body fully."""

from __future__ import annotations

import asyncio
import sys

import httpx
import uvloop


async def main(path: str, workers: int) -> int:
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=workers * 2)
    failures = 0

    async def work(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while (url := await queue.get()) is not None:
            try:
                response = await client.get(url)
                if response.status_code >= 400:
                    failures += 1
            except (httpx.HTTPError, OSError):
                failures += 1

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        tasks = [asyncio.create_task(work(client)) for _ in range(workers)]
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
