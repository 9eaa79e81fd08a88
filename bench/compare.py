"""CPU per request of this tree's shoal against another commit's, run in turns.

    python bench/compare.py REF [--requests 20000] [--rounds 8]

Checks REF out into a temporary worktree, starts the suite's private nginx on 127.0.0.1
(bench/bench.py's ``Nginx``: 1 KiB bodies), and runs ``shoal fetch`` over the same list of
URLs with each tree's ``src/`` in turn (base, this tree, base, this tree, …), so that a
machine's slow spell falls on both alike. Each run's CPU time (user + system, from the
child's resource usage) is divided by the requests; the minimum and the median over the
rounds are printed for both, with their ratio. CPU per request, not wall time: a change to
the request path shows in it even on a loaded machine. Traffic goes only to 127.0.0.1;
every run is bounded (300 s).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import Nginx  # the suite's own nginx, from beside this file

HERE = Path(__file__).resolve().parent.parent


def cpu_of_run(src: Path, urls: Path, output: Path) -> float:
    """CPU seconds of one ``shoal fetch`` of ``urls`` with the package from ``src``."""
    for stale in output.parent.glob(output.name + "*"):
        stale.unlink()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "shoal", "fetch", str(urls), "-o", str(output), "-q"],
        env={**os.environ, "PYTHONPATH": str(src)},
        check=True,
        timeout=300,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the commit to compare with (e.g. HEAD~3, a tag)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="shoal-compare-"))
    base = scratch / "base"
    subprocess.run(
        ["git", "-C", str(HERE), "worktree", "add", "-q", "--detach", str(base), args.ref],
        check=True,
    )
    nginx = Nginx(scratch / "nginx")
    nginx.start()
    try:
        urls = scratch / "urls.txt"
        urls.write_text("".join(f"{nginx.base}/1k.bin?i={i}\n" for i in range(args.requests)))
        trees = {args.ref: base / "src", "this tree": HERE / "src"}
        spent: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                seconds = cpu_of_run(src, urls, scratch / "out.jsonl")
                spent[name].append(seconds / args.requests * 1e6)
        for name, values in spent.items():
            shown = " ".join(f"{value:.0f}" for value in values)
            print(
                f"{name:>12}: CPU µs/request min {min(values):.0f}"
                f" median {statistics.median(values):.0f}  ({shown})"
            )
        ours, theirs = spent["this tree"], spent[args.ref]
        print(
            f"this tree / {args.ref}: min {min(ours) / min(theirs):.3f},"
            f" median {statistics.median(ours) / statistics.median(theirs):.3f}"
        )
    finally:
        nginx.stop()
        subprocess.run(
            ["git", "-C", str(HERE), "worktree", "remove", "--force", str(base)], check=False
        )
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
