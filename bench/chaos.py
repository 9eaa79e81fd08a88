"""The chaos suite at a larger scale: shoal's engine over tens of thousands of requests to
the chaos server, with the checks of ``tests/chaos`` (every request final once, with the
error kind and attempts its fault implies, the server's counts, ``statistics()``, a time
bound derived from the timeouts, and the peak growth of resident memory).

    python bench/chaos.py --requests 50000 --seed 7 [--journal | --no-journal]

The server runs in this process on 127.0.0.1; host names under ``.test`` resolve to it and
nothing else resolves, so no traffic leaves the machine. The run is bounded by its time
bound (it is cut off and reported when over). Exit status 0 when every check passed, 1
otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.chaos

from tests.chaos.chaos_server import Chaos, ChaosServer
from tests.chaos.harness import ChaosConfig, RunReport, run_library


async def chaos(requests: int, seed: int, journal: bool) -> RunReport:
    config = ChaosConfig()
    async with ChaosServer(Chaos(seed)) as server:
        if not journal:
            return await run_library(server, requests, config)
        with tempfile.TemporaryDirectory(prefix="shoal-chaos-") as folder:
            return await run_library(
                server, requests, config, journal=Path(folder) / "chaos.journal"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000, help="requests in the run")
    parser.add_argument("--seed", type=int, default=7, help="the seed that picks the faults")
    parser.add_argument(
        "--journal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use an SQLite journal in a temporary folder (default) or the memory store",
    )
    options = parser.parse_args()
    if options.requests < 1:
        parser.error("--requests must be at least 1")
    report = asyncio.run(chaos(options.requests, options.seed, options.journal))
    print(report.summary())
    stats = report.statistics
    print(f"errors: {dict(sorted(stats.by_error.items()))}")
    print(f"statuses: {dict(sorted(stats.by_status.items()))}")
    if report.problems:
        print(report.problems.report())
        return 1
    print("every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
