"""Peer: two bare aiohttp pools at once, each fetching half of the list (every other line),
in two processes: what two cores give hand-written code, shoal's ``--processes 2`` peer.

    python aiohttp_pool_pair.py URLS K

Each process gets K // 2 workers; the failures of both are summed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

POOL = Path(__file__).resolve().parent / "aiohttp_pool.py"


def main(path: str, workers: int) -> int:
    with tempfile.TemporaryDirectory(prefix="pool-pair-") as folder:
        halves = [Path(folder) / "even.txt", Path(folder) / "odd.txt"]
        with open(path) as source, halves[0].open("w") as even, halves[1].open("w") as odd:
            for number, line in enumerate(source):
                (odd if number % 2 else even).write(line)
        procs = [
            subprocess.Popen(
                [sys.executable, str(POOL), str(half), str(max(1, workers // 2))],
                stderr=subprocess.PIPE,
                text=True,
            )
            for half in halves
        ]
        failures = 0
        for proc in procs:
            _, err = proc.communicate()
            match = re.search(r"failures=(\d+)", err)
            failures += int(match.group(1)) if match else 1
    print(f"failures={failures}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
