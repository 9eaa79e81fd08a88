"""Mapping a coroutine over many items: shoal.map against the usual ways, in the same run.

Each client calls the same coroutine (``await asyncio.sleep(S)``, then return its item) on
N items with at most K calls at once, in a process of its own, on uvloop:

* pool: K worker tasks reading a bounded queue (the lean way to write it by hand);
* gather: ``asyncio.gather`` of one task per item behind a semaphore (the usual way);
* aiometer: ``aiometer.run_on_each(fn, items, max_at_once=K)``;
* shoal: ``shoal.map(fn, items, concurrency=K)``, outcomes iterated, no journal;
* shoal-timeout: the same with a timeout on each call (``timeout_s=30``);
* shoal-journal: the same with a SQLite journal and an output file (resumable, every
  record written);
* shoal-groups: the same as shoal-journal, the items in 100 groups with a cap per group
  of K/100 (per-key limits, which the others do not have).

Prints items per second, CPU per item (all threads), peak RSS, and each client's ratios to
the pool. No network is used.

    python bench/map.py [-n N] [-c K] [--sleep S] [--reps R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

CLIENTS = (
    "pool", "gather", "aiometer", "shoal", "shoal-timeout", "shoal-journal", "shoal-groups"
)  # fmt: skip
GROUPS = 100


def _worker(client: str, count: int, concurrency: int, sleep_s: float) -> dict[str, float]:
    """Run one client in this process; wall and CPU seconds of the run alone."""

    async def call(item: int) -> int:
        await asyncio.sleep(sleep_s)
        return item

    started, cpu = time.perf_counter(), time.process_time()
    done = 0
    if client.startswith("shoal"):
        import shoal

        work = tempfile.mkdtemp(prefix="bench-map-")
        options: dict[str, object] = {"concurrency": concurrency}
        if client == "shoal-timeout":
            options["timeout_s"] = 30.0
        elif client != "shoal":
            options["journal"] = os.path.join(work, "job.journal")
            options["output"] = os.path.join(work, "out.jsonl")
        if client == "shoal-groups":
            options["group"] = lambda item: item % GROUPS
            options["per_group"] = max(1, concurrency // GROUPS)
        for outcome in shoal.map(call, range(count), **options):  # type: ignore[arg-type]
            done += outcome.ok
    else:
        import uvloop

        done = uvloop.run(_plain(client, call, count, concurrency))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if done != count:
        raise SystemExit(f"{client}: {done} of {count} calls succeeded")
    return {"wall": wall, "cpu": cpu}


async def _plain(
    client: str, call: Callable[[int], Awaitable[int]], count: int, concurrency: int
) -> int:
    done = 0
    if client == "pool":
        queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=2 * concurrency)

        async def worker() -> None:
            nonlocal done
            while (item := await queue.get()) is not None:
                await call(item)
                done += 1

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
            for item in range(count):
                await queue.put(item)
            for _ in range(concurrency):
                await queue.put(None)
    elif client == "gather":
        gate = asyncio.Semaphore(concurrency)

        async def bounded(item: int) -> int:
            async with gate:
                return await call(item)

        done = len(await asyncio.gather(*(bounded(item) for item in range(count))))
    else:
        import aiometer

        async def counted(item: int) -> None:
            nonlocal done
            await call(item)
            done += 1

        await aiometer.run_on_each(counted, range(count), max_at_once=concurrency)
    return done


def measure(client: str, count: int, concurrency: int, sleep_s: float) -> dict[str, float]:
    """One run of ``client`` in a process of its own, with its peak RSS."""
    script = [sys.executable, __file__, "--worker", client, str(count), str(concurrency)]
    process = subprocess.run(
        [*script, str(sleep_s)], capture_output=True, text=True, check=False, timeout=600
    )
    if process.returncode != 0:
        raise SystemExit(f"{client} failed:\n{process.stderr}")
    return json.loads(process.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--items", type=int, default=100_000)
    parser.add_argument("-c", "--concurrency", type=int, default=500)
    parser.add_argument("--sleep", type=float, default=0.01, help="seconds each call waits")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default=",".join(CLIENTS))
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        client, count, concurrency, sleep_s = args.worker
        result = _worker(client, int(count), int(concurrency), float(sleep_s))
        result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    clients = args.only.split(",")
    runs: dict[str, list[dict[str, float]]] = {client: [] for client in clients}
    for _ in range(args.reps):  # interleaved, so drift on a shared machine hits all alike
        for client in clients:
            runs[client].append(measure(client, args.items, args.concurrency, args.sleep))
    floor = args.items * args.sleep / args.concurrency
    print(
        f"{args.items:,} calls of sleep({args.sleep:g} s), {args.concurrency} at once"
        f" (the floor: {floor:.2f} s); medians of {args.reps} runs"
    )
    print(f"{'client':<14} {'items/s':>9} {'CPU µs/item':>12} {'RSS MiB':>8}  vs pool")
    base = None
    for client in clients:
        wall = statistics.median(run["wall"] for run in runs[client])
        cpu = statistics.median(run["cpu"] for run in runs[client]) / args.items * 1e6
        rss = statistics.median(run["rss_mib"] for run in runs[client])
        rate = args.items / wall
        if base is None:
            base = (rate, cpu)
        ratio = f"{rate / base[0]:.2f}× speed, {cpu / base[1]:.2f}× CPU"
        print(f"{client:<14} {rate:>9,.0f} {cpu:>12.1f} {rss:>8.0f}  {ratio}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
