"""Peer: aiometer.run_on_each over the URL list with max_at_once=K, on one aiohttp session
(anyio on asyncio with uvloop). aiometer takes a sequence, so the list is read up front."""

from __future__ import annotations

import sys

import aiohttp
import aiometer
import anyio


async def main(urls: list[str], workers: int) -> int:
    failures = 0

    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetch(url: str) -> None:
            nonlocal failures
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status >= 400:
                        failures += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                failures += 1

        await aiometer.run_on_each(fetch, urls, max_at_once=workers)
    return failures


if __name__ == "__main__":
    with open(sys.argv[1]) as file:
        all_urls = [line.strip() for line in file if line.strip()]
    failed = anyio.run(
        main, all_urls, int(sys.argv[2]), backend="asyncio", backend_options={"use_uvloop": True}
    )
    print(f"failures={failed}", file=sys.stderr)
