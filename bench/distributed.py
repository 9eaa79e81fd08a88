"""One job over PostgreSQL: the store's cost against SQLite's, and scaling out by workers.

Both cases run ``shoal`` as a user would, against a private nginx on 127.0.0.1 (the only
address used), in the same run, so the ratios compare like with like on this machine:

* store: the same fetch job (1 KiB bodies over many host names) in one process, once with
  the SQLite journal and once on PostgreSQL (``--store``); requests per second and CPU
  per request (the shoal process, and the database's, read from /proc).
* scale: a latency-bound job (each answer takes 100 ms, so the cores are not the limit)
  worked on by 1, 2 and 4 processes on this machine (``shoal fetch --store`` and
  ``shoal worker``), from the first start to the last exit; throughput against one worker.

Then the database's cost per request, read from the store case: bytes per row of each
table with its indexes, and WAL bytes written per request; ``docs/distributed.md`` turns
them into a back-of-envelope for 10^9 URLs.

    python bench/distributed.py [--requests N] [--latency-requests N] [--reps R]
    (or: bash bench/run distributed ...)

The database is ``SHOAL_BENCH_POSTGRES`` (default ``postgresql://root@127.0.0.1/test``);
each run works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import HOST, Nginx, shoal_executable

DATABASE = os.environ.get("SHOAL_BENCH_POSTGRES", "postgresql://root@127.0.0.1/test")
TABLES = ("shoal_requests", "shoal_queue", "shoal_records", "shoal_hosts", "shoal_timeline")


def write_urls(path: Path, base_port: int, route: str, count: int, hosts: int) -> None:
    with path.open("w") as file:
        for n in range(count):
            file.write(f"http://h{n % hosts}.test:{base_port}{route}?n={n}\n")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its waited-for children (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(value) for value in fields[11:15]) / ticks


def database_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL server process on this machine."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() in {"postgres", "postmaster"}:
                total += cpu_seconds(int(entry))
        except OSError:
            continue
    return total


def run_all(commands: list[list[str]]) -> float:
    """Start ``commands`` a moment apart (the first makes the job); the wall time until the
    last one ends."""
    started = time.perf_counter()
    processes = []
    for n, argv in enumerate(commands):
        processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        if n == 0 and len(commands) > 1:
            time.sleep(0.3)  # the job exists before the workers look for it
    for argv, process in zip(commands, processes, strict=True):
        _, err = process.communicate(timeout=900)
        if process.returncode != 0:
            raise SystemExit(f"{argv[1]} exited {process.returncode}: {err.decode()[-2000:]}")
    return time.perf_counter() - started


def children_cpu() -> float:
    """CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def sql(dsn: str, query: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="store case (default 20000)")
    parser.add_argument(
        "--latency-requests", type=int, default=12_000, help="scale case (default 12000)"
    )
    parser.add_argument("--reps", type=int, default=2, help="repetitions, interleaved")
    args = parser.parse_args()
    shoal = [shoal_executable()]
    schema = "shoal_bench_" + secrets.token_hex(4)
    dsn = f"{DATABASE}{'&' if '?' in DATABASE else '?'}search_path={schema}"
    asyncio.run(sql(DATABASE, f"CREATE SCHEMA {schema}"))
    scratch = Path(tempfile.mkdtemp(prefix="shoal-bench-dist-"))
    nginx = Nginx(scratch / "nginx")
    nginx.start()
    try:
        return run(args, shoal, dsn, scratch, nginx)
    finally:
        nginx.stop()
        asyncio.run(sql(DATABASE, f"DROP SCHEMA {schema} CASCADE"))


def run(args: argparse.Namespace, shoal: list[str], dsn: str, scratch: Path, nginx: Nginx) -> int:
    resolve = ["--resolve", f"*.test:{HOST}", "--progress", "off", "-q"]
    fast = scratch / "fast.txt"
    write_urls(fast, nginx.port, "/1k.bin", args.requests, hosts=50)
    slow = scratch / "slow.txt"
    write_urls(slow, nginx.port, "/slow", args.latency_requests, hosts=100)
    store_rows: dict[str, list[tuple[float, float, float]]] = {"sqlite": [], "postgres": []}
    scale_rows: dict[int, list[float]] = {1: [], 2: [], 4: []}
    figures: dict[str, float] = {}
    for rep in range(args.reps):
        for kind in ("sqlite", "postgres"):
            work = scratch / f"{kind}-{rep}"
            work.mkdir()
            common = [*shoal, "fetch", str(fast), *resolve, "-c", "100", "--per-host", "8"]
            if kind == "sqlite":
                argv = [*common, "-o", str(work / "out.jsonl")]
            else:
                argv = [*common, "--store", dsn, "--job", f"store-{rep}"]
            wal = asyncio.run(sql(dsn, "SELECT pg_current_wal_lsn()"))[0][0]
            database, mine = database_cpu(), children_cpu()
            wall = run_all([argv])
            cpu, db_cpu = children_cpu() - mine, database_cpu() - database
            store_rows[kind].append((args.requests / wall, cpu, db_cpu))
            if kind == "postgres" and rep == 0:
                figures = asyncio.run(per_row(dsn, wal, args.requests))
            log(f"store {kind} rep {rep}: {args.requests / wall:,.0f} req/s")
        for workers in (1, 2, 4):
            job = f"scale-{rep}-{workers}"
            common = ["--store", dsn, "--job", job, *resolve, "-c", "50"]
            first = [*shoal, "fetch", str(slow), *common, "--per-host", "2"]
            others = [[*shoal, "worker", *common] for _ in range(workers - 1)]
            wall = run_all([first, *others])
            scale_rows[workers].append(args.latency_requests / wall)
            log(f"scale {workers} workers rep {rep}: {args.latency_requests / wall:,.0f} req/s")
    report(args, store_rows, scale_rows, figures)
    return 0


async def per_row(dsn: str, wal_before: str, requests: int) -> dict[str, float]:
    """Bytes per row of each table (with its indexes, as the database holds them now, after
    the job), and WAL bytes per request."""
    figures: dict[str, float] = {}
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CHECKPOINT")
        figures["wal"] = (
            float(
                await connection.fetchval(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", wal_before
                )
            )
            / requests
        )
        for table in TABLES:
            rows = await connection.fetchval(f"SELECT count(*) FROM {table}")
            heap = await connection.fetchval("SELECT pg_relation_size($1)", table)
            indexes = await connection.fetchval("SELECT pg_indexes_size($1)", table)
            figures[f"{table}.rows"] = float(rows)
            figures[f"{table}.heap"] = heap / max(1, rows)
            figures[f"{table}.index"] = indexes / max(1, rows)
    finally:
        await connection.close()
    return figures


def log(message: str) -> None:
    print(f"bench/distributed: {message}", file=sys.stderr, flush=True)


def report(
    args: argparse.Namespace,
    store_rows: dict[str, list[tuple[float, float, float]]],
    scale_rows: dict[int, list[float]],
    figures: dict[str, float],
) -> None:
    median = statistics.median
    print(f"\n## Store: one process, {args.requests:,} requests of 1 KiB over 50 hosts")
    print("| store | req/s | CPU per request (shoal) | CPU per request (database) | ratio |")
    print("|---|---|---|---|---|")
    base = median(r[0] for r in store_rows["sqlite"])
    for kind, rows in store_rows.items():
        rate = median(r[0] for r in rows)
        shoal_cpu = median(r[1] for r in rows) / args.requests * 1e6
        db_cpu = median(r[2] for r in rows) / args.requests * 1e6
        print(
            f"| {kind} | {rate:,.0f} | {shoal_cpu:.0f} µs | {db_cpu:.0f} µs | {rate / base:.2f}× |"
        )
    print(f"\n## Scale: {args.latency_requests:,} requests answered in 100 ms, over 100 hosts")
    print("| workers | req/s | against one worker | against N × one |")
    print("|---|---|---|---|")
    one = median(scale_rows[1])
    for workers, rates in scale_rows.items():
        rate = median(rates)
        print(f"| {workers} | {rate:,.0f} | {rate / one:.2f}× | {rate / (one * workers):.2f} |")
    if figures:
        print(f"\n## The database's cost per request (WAL {figures['wal']:,.0f} bytes a request)")
        print("| table | rows | heap bytes per row | index bytes per row |")
        print("|---|---|---|---|")
        for table in TABLES:
            print(
                f"| {table} | {figures[f'{table}.rows']:,.0f} | {figures[f'{table}.heap']:,.0f}"
                f" | {figures[f'{table}.index']:,.0f} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
