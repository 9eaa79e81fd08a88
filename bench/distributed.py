"""One job over PostgreSQL: the store's cost against SQLite's, and scaling out by workers.

Both cases run ``shoal`` as a user would, against a private nginx on 127.0.0.1 (the only
address used), in the same run, so the ratios compare like with like on this machine:

* store: the same fetch job (1 KiB bodies over many host names) in one process, once with
  the SQLite journal and once on PostgreSQL (``--store``); requests per second and CPU
  per request (the shoal process, and the database's, read from /proc).
* scale: a latency-bound job (each answer takes 100 ms, so the cores are not the limit;
  400 hosts, so their caps are not either) worked on by 1, 2 and 4 processes on this
  machine (``shoal fetch --store`` and ``shoal worker``): the rate from the first start
  to the last exit, and the steady rate (from a quarter of the job to three quarters, out
  of the job's per-second timeline), against N times one worker's.

Then the database's cost per request, read from the store case: bytes per row of each
table with its indexes, and WAL bytes written per request; and admission alone (the input
copied in, no worker): rows a second, and the pending queue's bytes per row.
``docs/distributed.md`` turns them into a back-of-envelope for 10^9 URLs.

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
#: Hosts of the latency-bound case: their caps together (2 each) far above the workers'
#: concurrency, so that the workers, not the hosts, are what limits the rate.
SLOW_HOSTS = 400
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
    parser.add_argument(
        "--admit", type=int, default=200_000, help="admission case (default 200000)"
    )
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
    write_urls(slow, nginx.port, "/slow", args.latency_requests, hosts=SLOW_HOSTS)
    store_rows: dict[str, list[tuple[float, float, float]]] = {"sqlite": [], "postgres": []}
    scale_rows: dict[int, list[tuple[float, float]]] = {1: [], 2: [], 4: []}
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
            steady = asyncio.run(steady_rate(dsn, job))
            scale_rows[workers].append((args.latency_requests / wall, steady))
            log(
                f"scale {workers} workers rep {rep}: {args.latency_requests / wall:,.0f} req/s"
                f" start to end, {steady:,.0f} req/s steady"
            )
    pending = asyncio.run(admission(args.admit, hosts=1000))
    report(args, store_rows, scale_rows, figures, pending)
    return 0


async def steady_rate(dsn: str, job: str) -> float:
    """Requests per second from a quarter of the job to three quarters of it (from the
    per-second timeline of commits): the rate once every worker is up, before the tail."""
    rows = await sql(
        dsn,
        "SELECT t.second, sum(t.ok + t.failed) FROM shoal_timeline AS t"
        " JOIN shoal_jobs AS j ON j.id = t.job_id WHERE j.name = $1 GROUP BY 1 ORDER BY 1",
        job,
    )
    total = sum(count for _, count in rows)
    done, start, end, between = 0, None, None, 0
    for second, count in rows:
        if start is None and done >= total / 4:
            start = second
        if start is not None and end is None:
            between += count
        done += count
        if end is None and done >= total * 3 / 4:
            end = second
    if start is None or end is None or end <= start:
        return float("nan")
    return between / (end - start + 1)


async def admission(count: int, hosts: int) -> dict[str, float]:
    """Admit ``count`` requests over ``hosts`` hosts as ``shoal fetch`` does (batches of
    512, each copied in), with no worker, in a schema of its own: admissions per second,
    and the bytes per row of the queue (which holds only pending requests, so it is
    measured here) and of the requests."""
    schema = "shoal_bench_admit_" + secrets.token_hex(4)
    await sql(DATABASE, f"CREATE SCHEMA {schema}")
    try:
        return await _admission(
            f"{DATABASE}{'&' if '?' in DATABASE else '?'}search_path={schema}", count, hosts
        )
    finally:
        await sql(DATABASE, f"DROP SCHEMA {schema} CASCADE")


async def _admission(dsn: str, count: int, hosts: int) -> dict[str, float]:
    from shoal.sources.items import entry_for
    from shoal.sources.source import Position
    from shoal.store.postgres import PostgresStore

    store = PostgresStore(dsn, "admission")
    await store.open("<bench>")
    started = time.perf_counter()
    try:
        for first in range(0, count, 512):
            batch = range(first, min(count, first + 512))
            entries = [entry_for(f"http://h{n % hosts}.test/page?n={n}", n + 1) for n in batch]
            await store.admit(entries, Position(batch[-1] + 1, 0))
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    figures = {"admitted_per_s": count / seconds}
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM ANALYZE shoal_queue")
        for table in ("shoal_queue", "shoal_requests"):
            figures[f"{table}.heap"] = (
                await connection.fetchval("SELECT pg_relation_size($1)", table) / count
            )
            figures[f"{table}.index"] = (
                await connection.fetchval("SELECT pg_indexes_size($1)", table) / count
            )
    finally:
        await connection.close()
    return figures


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
    scale_rows: dict[int, list[tuple[float, float]]],
    figures: dict[str, float],
    pending: dict[str, float],
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
    print(
        f"\n## Scale: {args.latency_requests:,} requests answered in 100 ms, over"
        f" {SLOW_HOSTS} hosts (-c 50 each)"
    )
    print("| workers | req/s, start to end | steady req/s | steady, against N × one |")
    print("|---|---|---|---|")
    one = median(rate for _, rate in scale_rows[1])
    for workers, rates in scale_rows.items():
        wall = median(rate for rate, _ in rates)
        steady = median(rate for _, rate in rates)
        print(f"| {workers} | {wall:,.0f} | {steady:,.0f} | {steady / (one * workers):.2f} |")
    if figures:
        print(f"\n## The database's cost per request (WAL {figures['wal']:,.0f} bytes a request)")
        print("| table | rows | heap bytes per row | index bytes per row |")
        print("|---|---|---|---|")
        for table in TABLES:
            if table == "shoal_queue":
                continue  # empty once the job is done: measured at admission, below
            print(
                f"| {table} | {figures[f'{table}.rows']:,.0f} | {figures[f'{table}.heap']:,.0f}"
                f" | {figures[f'{table}.index']:,.0f} |"
            )
    print(
        f"\n## Admission: {args.admit:,} requests over 1,000 hosts, no worker:"
        f" {pending['admitted_per_s']:,.0f} a second"
    )
    print("| table | heap bytes per pending request | index bytes per pending request |")
    print("|---|---|---|")
    for table in ("shoal_queue", "shoal_requests"):
        print(f"| {table} | {pending[f'{table}.heap']:,.0f} | {pending[f'{table}.index']:,.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
