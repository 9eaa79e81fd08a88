"""Peer: the bare aiohttp worker pool (:mod:`aiohttp_pool`) streaming each body to its own
file in DIR, 64 KiB at a time. The baseline for ``--save-bodies``."""

from __future__ import annotations

import os
import sys

import aiohttp
import uvloop
from aiohttp_pool import report, run_pool


async def main(path: str, workers: int, folder: str) -> int:
    os.makedirs(folder, exist_ok=True)

    async def save(number: int, url: str, response: aiohttp.ClientResponse) -> None:
        with open(os.path.join(folder, str(number)), "wb") as file:  # noqa: ASYNC230
            async for chunk in response.content.iter_chunked(65536):
                file.write(chunk)

    return await run_pool(path, workers, save)


if __name__ == "__main__":
    report(uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
