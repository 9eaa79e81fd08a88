"""Peer: the bare aiohttp worker pool (K workers on a bounded queue, uvloop) that streams
each body to its own file in DIR, 64 KiB at a time. The baseline for ``--save-bodies``."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp
import uvloop


async def main(path: str, workers: int, folder: str) -> int:
    queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(maxsize=workers * 2)
    failures = 0
    os.makedirs(folder, exist_ok=True)

    async def work(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while (item := await queue.get()) is not None:
            number, url = item
            try:
                async with session.get(url) as response:
                    with open(os.path.join(folder, str(number)), "wb") as file:  # noqa: ASYNC230
                        async for chunk in response.content.iter_chunked(65536):
                            file.write(chunk)
                    if response.status >= 400:
                        failures += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                failures += 1

    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(work(session)) for _ in range(workers)]
        with open(path) as file:  # noqa: ASYNC230
            for number, line in enumerate(file):
                await queue.put((number, line.strip()))
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)
    return failures


if __name__ == "__main__":
    failed = uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    print(f"failures={failed}", file=sys.stderr)
