"""Peer: the naive pattern, asyncio.gather over one task per URL with a semaphore(K) around
each request (uvloop). Every URL becomes a task before the first request is sent."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import uvloop


async def main(urls: list[str], workers: int) -> int:
    semaphore = asyncio.Semaphore(workers)

    async def fetch(session: aiohttp.ClientSession, url: str) -> bool:
        async with semaphore:
            try:
                async with session.get(url) as response:
                    await response.read()
                    return response.status < 400
            except (aiohttp.ClientError, OSError, TimeoutError):
                return False

    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(fetch(session, url) for url in urls))
    return results.count(False)


if __name__ == "__main__":
    with open(sys.argv[1]) as file:
        all_urls = [line.strip() for line in file if line.strip()]
    failed = uvloop.run(main(all_urls, int(sys.argv[2])))
    print(f"failures={failed}", file=sys.stderr)
