"""Looking up many distinct host names: shoal's resolver against aiohttp's c-ares resolver.

Starts the tests' DNS server (dnslib on 127.0.0.1, `tests/dns_server.py`), then runs each
client in a process of its own: N distinct names looked up with K at once, then the same
names again. Prints lookups per second for both passes, the queries the server answered,
and each process's peak RSS. No traffic leaves 127.0.0.1.

    python bench/dns.py [--names N] [-k K] [--reps R]

The clients:

* shoal: `shoal.CachingResolver` (c-ares through aiodns, its cache bounded at 100,000 names
  and kept for the TTL; the second pass is answered from it);
* aiohttp: `aiohttp.resolver.AsyncResolver` given the same name server — c-ares as well,
  with no cache of its own (aiohttp's connector keeps 1,000 names for 10 s in front of it;
  here every lookup reaches the resolver, as it does once a list outgrows that cache).

The server is one Python process; its own pace bounds both clients' first pass.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dns_server import TestDNSServer  # noqa: E402


async def client(kind: str, server: str, names: int, k: int) -> None:
    import aiohttp.resolver

    import shoal

    if kind == "shoal":
        resolver: aiohttp.abc.AbstractResolver = shoal.CachingResolver(
            shoal.DNSSettings(servers=(server,), max_names=max(names, 1))
        )
    else:
        resolver = aiohttp.resolver.AsyncResolver(nameservers=[server], timeout=2.0, tries=2)
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=k * 2)
    failures = 0

    async def work() -> None:
        nonlocal failures
        while (name := await queue.get()) is not None:
            try:
                # As aiohttp's connector asks by default: any family.
                await resolver.resolve(name, 80, socket.AF_UNSPEC)
            except OSError:
                failures += 1

    passes = []
    for _ in range(2):
        started = time.perf_counter()
        workers = [asyncio.create_task(work()) for _ in range(k)]
        for n in range(names):
            await queue.put(f"bench{n}.test")
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        passes.append(time.perf_counter() - started)
    await resolver.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{passes[0]} {passes[1]} {rss} {failures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("-k", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float, float, int, int]]] = {"shoal": [], "aiohttp": []}
    with TestDNSServer() as dns:
        for _ in range(args.reps):
            for kind in rows:
                before = dns.zone.total()
                argv = [sys.executable, __file__, "--client", kind, dns.address]
                argv += [str(args.names), str(args.k)]
                done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    sys.exit(f"{kind} failed: {done.stderr}")
                first, second, rss, failures = done.stdout.split()
                queries = dns.zone.total() - before
                rows[kind].append((float(first), float(second), float(rss), int(failures), queries))
    print(f"{args.names:,} distinct names, {args.k} lookups at once, medians of {args.reps}")
    print(
        "| client | first pass lookups/s | second pass lookups/s | server queries |"
        " peak RSS MiB | failures |"
    )
    print("|---|---|---|---|---|---|")
    for kind, runs in rows.items():
        first = statistics.median(r[0] for r in runs)
        second = statistics.median(r[1] for r in runs)
        print(
            f"| {kind} | {args.names / first:,.0f} | {args.names / second:,.0f} |"
            f" {statistics.median(r[4] for r in runs):,.0f} |"
            f" {statistics.median(r[2] for r in runs):.1f} | {max(r[3] for r in runs)} |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        kind, server, names, k = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        import uvloop

        uvloop.run(client(kind, server, names, k))
        os._exit(0)
    main()
