"""Crash soak: kill ``shoal fetch`` with SIGKILL at random moments, many times, and check.

    python bench/soak.py --kills 200 --urls 20000 --seed 1 --max-seconds 600

Starts its own server on 127.0.0.1 (in this process, on this script's event loop), then
runs rounds of the loop in ``tests/crashloop.py``: each round is a new job of about
``--urls`` URLs (with duplicates, malformed lines and requests that end as failures) on 1,
16 or 300 host names (sometimes most of them on one), at ``-c`` 8, 24 or 100, read from a
file or from stdin (a pipe or a redirected file), run as a ``shoal fetch``
subprocess and killed after a random delay, again and again, until it finishes on its own
or ``--round-kills`` kills or the time run out; then the job is completed, checked, and
run once more as a no-op. Rounds follow until ``--kills`` kills are spent or
``--max-seconds`` have passed (a round's last runs may take up to ``--run-limit`` seconds
each beyond that).

After every kill the journal is read read-only and checked against the output; the
requests it holds as final must never reach the server again; a completed job must hold
every input request exactly once in the output and the journal. One line per kill, one
per round, and a verdict. Exit status 0 when every invariant held, 1 on a violation (the
job's files are kept and their folder printed), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.crashloop import CrashRound, CrashServer, RoundReport, Settings, Violation


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Kill shoal fetch at random moments and check that resuming is exactly-once."
    )
    parser.add_argument("--kills", type=int, default=200, help="kills in all (default 200)")
    parser.add_argument("--urls", type=int, default=20_000, help="URLs per job (default 20000)")
    parser.add_argument(
        "--round-kills",
        type=int,
        default=50,
        help="kills per job at most, before it is completed and a new one starts (default 50)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--max-seconds", type=float, default=600, help="stop killing after this (default 600)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="shoal's -c (default: 8, 24 or 100, chosen per round)",
    )
    parser.add_argument(
        "--max-delay", type=float, default=0.3, help="longest delay before a kill (default 0.3)"
    )
    parser.add_argument(
        "--long",
        type=float,
        default=0.15,
        help="share of kills after a longer delay, so jobs reach their end (default 0.15)",
    )
    parser.add_argument(
        "--long-delay",
        type=float,
        default=2.0,
        help="longest of those longer delays (default 2.0)",
    )
    parser.add_argument(
        "--run-limit", type=float, default=180, help="longest one run may take (default 180)"
    )
    parser.add_argument(
        "--warc",
        action="store_true",
        help="archive with --warc too, tear the archive at kills, and check it at each job's end",
    )
    parser.add_argument("--keep", action="store_true", help="keep every job's files")
    arguments = parser.parse_args(argv)
    if min(arguments.kills, arguments.round_kills) < 1 or arguments.urls < 10:
        parser.error("--kills and --round-kills must be at least 1, --urls at least 10")
    if arguments.max_seconds <= 0:
        parser.error("--max-seconds must be positive")
    return arguments


async def soak(arguments: argparse.Namespace, folder: Path) -> int:
    server = CrashServer()
    await server.start()
    started = time.monotonic()
    deadline = started + arguments.max_seconds
    reports: list[RoundReport] = []
    kills = 0
    number = 0
    try:
        while kills < arguments.kills and time.monotonic() < deadline:
            number += 1
            rng = random.Random(arguments.seed * 100_003 + number)
            stdin = rng.random() < 0.5
            concurrency = arguments.concurrency or rng.choice((8, 24, 100))
            hosts = rng.choice((1, 16, 16, 300))
            hot = 0.0 if hosts == 1 else rng.choice((0.0, 0.0, 0.8))
            settings = Settings(
                urls=arguments.urls,
                kills=min(arguments.round_kills, arguments.kills - kills),
                max_seconds=max(0.0, deadline - time.monotonic()),
                stdin=stdin,
                concurrency=concurrency,
                hosts=hosts,
                hot=hot,
                max_delay_s=arguments.max_delay,
                long=arguments.long,
                long_delay_s=arguments.long_delay,
                run_limit_s=arguments.run_limit,
                warc=arguments.warc,
            )
            where = folder / f"round-{number}"
            where.mkdir()
            source = "stdin" if stdin else "file"
            print(
                f"== round {number}: {arguments.urls} URLs on {hosts} hosts"
                + (f" ({hot:.0%} on one)" if hot else "")
                + f", from a {source}, -c {concurrency}, up to {settings.kills} kills",
                flush=True,
            )

            def say(line: str) -> None:
                print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

            numbering = (kills, arguments.kills)
            crash = CrashRound(server, where, settings, rng, say=say, numbering=numbering)
            try:
                report = await crash.run()
            except Violation as violation:
                print(f"VIOLATION in round {number}: {violation}", flush=True)
                failed = kills + crash.report.kills
                print(f"soak FAILED after {failed} kills; files kept in {where}", flush=True)
                return 1
            except Exception:  # noqa: BLE001 - the soak's own fault, reported as a failure
                traceback.print_exc()
                failed = kills + crash.report.kills
                print(
                    f"soak FAILED (an error in the soak itself, round {number}) after {failed} "
                    f"kills; files kept in {where}",
                    flush=True,
                )
                return 1
            reports.append(report)
            kills += report.kills
            if not arguments.keep:
                shutil.rmtree(where)
    finally:
        await server.stop()
    seconds = time.monotonic() - started
    print(
        f"soak PASSED: {kills} kills over {len(reports)} rounds in {seconds:.0f}s "
        f"(seed {arguments.seed}): {sum(r.early_kills for r in reports)} before the run's "
        f"first request, {sum(r.partial_kills for r in reports)} with the job part done, "
        f"{sum(r.tears for r in reports)} torn outputs repaired, "
        f"{sum(r.refetched for r in reports)} requests sent again after kills caught them "
        f"in flight, none sent again once final; every job complete exactly once"
        + (f"; files in {folder}" if arguments.keep else ""),
        flush=True,
    )
    if kills < arguments.kills:
        print(f"(time ran out before the {arguments.kills} kills asked for)", flush=True)
    return 0


def main() -> None:
    arguments = parse_arguments()
    folder = Path(tempfile.mkdtemp(prefix="shoal-soak-"))
    status = asyncio.run(soak(arguments, folder))
    if not arguments.keep and not any(folder.iterdir()):
        folder.rmdir()
    sys.exit(status)


if __name__ == "__main__":
    main()
