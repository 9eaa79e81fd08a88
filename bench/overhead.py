"""shoal's own cost per request, with the network taken out.

Runs the engine on N URLs with a task that answers at once (no socket, no aiohttp), so
what is left is shoal's per-request work: parsing and keying the input, the scheduler,
results, statistics, and — in the second run — the SQLite journal and the JSONL output.
Then times the journal's two writes (admit, complete) on their own. No traffic at all.

    python bench/overhead.py [--urls N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import shoal
from shoal.job import Job
from shoal.result import Result
from shoal.sources.items import entry_for
from shoal.sources.source import Position
from shoal.store import SinkMark, SQLiteStore


class Instant:
    """A task that completes every job at once with a plausible success."""

    async def run(self, job: Job) -> Result:
        result = job.result(started_at=time.time())
        result.status, result.bytes, result.sha256 = 200, 1024, "0" * 64
        result.elapsed_ms = result.ttfb_ms = 1.0
        return result


async def engine_cost(urls: list[str], folder: Path | None) -> float:
    """Microseconds of wall time per request for a whole run."""
    limits = shoal.Limits(concurrency=100, per_host=100)
    async with shoal.Engine(limits=limits) as engine:
        engine._task = Instant()  # the seam the engine runs every job through
        journal = None if folder is None else str(folder / "job.journal")
        output = None if folder is None else str(folder / "out.jsonl")
        started = time.perf_counter()
        await engine.run(urls, journal=journal, output=output)
    return (time.perf_counter() - started) / len(urls) * 1e6


async def journal_cost(urls: list[str], folder: Path) -> tuple[float, float]:
    """Microseconds per request for admitting, then completing, in batches."""
    entries = [entry_for(url, n + 1) for n, url in enumerate(urls)]
    store = SQLiteStore(str(folder / "store.journal"))
    await store.open("overhead")
    started = time.perf_counter()
    jobs: list[Job] = []
    for start in range(0, len(entries), 512):
        jobs.extend(await store.admit(entries[start : start + 512], Position(start)))
    admitted = time.perf_counter()
    instant = Instant()
    for start in range(0, len(jobs), 256):
        batch = [(job, await instant.run(job)) for job in jobs[start : start + 256]]
        await store.complete(batch, SinkMark())
    completed = time.perf_counter()
    await store.close()
    count = len(urls)
    return (admitted - started) / count * 1e6, (completed - admitted) / count * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", type=int, default=100_000)
    args = parser.parse_args()
    urls = [f"http://127.0.0.1:9/item?{n}" for n in range(args.urls)]
    with tempfile.TemporaryDirectory(prefix="shoal-overhead-") as name:
        folder = Path(name)
        bare = await engine_cost(urls, None)
        print(f"engine, in memory, no output: {bare:5.1f} us per request")
        full = await engine_cost(urls, folder)
        print(f"engine, journal and JSONL:    {full:5.1f} us per request")
        admit, complete = await journal_cost(urls, folder)
        print(f"journal admit (writer thread): {admit:5.1f} us per request")
        print(f"journal complete (writer thread): {complete:5.1f} us per request")


if __name__ == "__main__":
    asyncio.run(main())
