"""The scheduler's own cost per request, and its memory, as the number of hosts grows.

    python bench/scheduler.py [--jobs 200000]

Drives shoal's Scheduler directly (no network, no journal): jobs are added as room frees
up, taken by 100 workers and finished at once, spread over 1, 1,000 and 100,000 hosts, with
and without per-host pacing. A single host's backlog is deferred to a MemoryStore and taken
back as its queue drains, by the local work source, as the engine does. Prints microseconds
per job (timed on its own) and the peak of memory allocated by Python in a second pass
(tracemalloc, which slows allocation too much to time with it on).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc

from yarl import URL

from shoal.config import Politeness
from shoal.job import Job
from shoal.request import Request
from shoal.scheduling import HostRules, Scheduler
from shoal.scheduling.backlog import LocalWork
from shoal.store import MemoryStore

WORKERS = 100
CAPACITY = 1024 + 512


async def drive(jobs: int, hosts: int, politeness: Politeness, *, trace: bool) -> float:
    """One pass: microseconds per job, or (``trace``) the peak MiB Python allocated."""
    scheduler = Scheduler(
        per_host=8, capacity=CAPACITY, rules=HostRules(politeness, 8), retry_after_max_s=1
    )
    request = Request("http://h.test/")
    target = URL("http://h.test/")
    names = [f"h{n}.test" for n in range(hosts)]

    work = LocalWork(MemoryStore())
    work.start(scheduler, HostRules(politeness, 8))

    async def feed() -> None:
        batch: list[Job] = []
        for seq in range(jobs):
            batch.append(Job(seq, request, None, target, None, names[seq % hosts]))
            if seq % 256 == 0:  # a batch, as the engine's feeder reads them
                await work.hand_on(batch)
                batch = []
                await scheduler.wait_room()
        await work.hand_on(batch)
        scheduler.close()

    async def work_on() -> None:
        while (job := await scheduler.wait_job()) is not None:
            scheduler.release(job)
            scheduler.finish(job)
            await asyncio.sleep(0)

    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        take_back = group.create_task(work.take_back())
        group.create_task(feed())
        workers = [group.create_task(work_on()) for _ in range(WORKERS)]
        await asyncio.wait(workers)
        take_back.cancel()
    elapsed = time.perf_counter() - started
    if not trace:
        return elapsed / jobs * 1e6
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    args = parser.parse_args()
    print(f"{args.jobs:,} jobs, {WORKERS} workers; us per job (add, take, release, finish)")
    print(f"{'hosts':>8} {'pacing':>8} {'us/job':>8} {'peak MiB':>9}")
    for hosts in (1, 1_000, 100_000):
        for label, politeness in (
            ("none", Politeness()),
            ("rate", Politeness(per_second=1e9, burst=1000)),
        ):
            # Timed without tracemalloc, which slows every allocation several times over.
            per_job = asyncio.run(drive(args.jobs, hosts, politeness, trace=False))
            peak = asyncio.run(drive(args.jobs, hosts, politeness, trace=True))
            print(f"{hosts:>8,} {label:>8} {per_job:>8.2f} {peak:>9.1f}")


if __name__ == "__main__":
    main()
