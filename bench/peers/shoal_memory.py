"""Peer: shoal's engine from library code with no journal (an in-memory store), writing the
same JSONL records as the command line. Set beside the command line's run, it shows what
the SQLite journal costs a run in wall time and CPU.

    python bench/peers/shoal_memory.py URLS K OUT
"""

from __future__ import annotations

import sys

import shoal
from shoal.cli.run import run_async
from shoal.sources import FileSource


async def main(urls: str, k: int, out: str) -> int:
    limits = shoal.Limits(concurrency=k, per_host=k)
    async with shoal.Engine(limits=limits) as engine:
        await engine.run(FileSource(urls), journal=None, output=out)
    return 0


if __name__ == "__main__":
    sys.exit(run_async(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
