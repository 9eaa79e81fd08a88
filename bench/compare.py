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

    python bench/compare.py REF --instructions [--requests 2000] [--rounds 1]

counts instructions instead (valgrind's callgrind, which needs no hardware counters):
each tree runs a one-URL job and a ``--requests`` job, and the difference divided by the
extra requests is the instructions per request, start-up taken out. Instruction counts
barely move with the machine's load (about 1% between runs here, against ±10% for CPU
time while other work runs), so small per-request changes show; a run under callgrind is
about 40 times slower, hence the smaller default list. The one-URL job's count is printed
too: the start-up's instructions.
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


def instructions_of_run(src: Path, urls: Path, output: Path) -> int:
    """Instructions (callgrind's ``Ir``) of one ``shoal fetch`` of ``urls`` from ``src``."""
    for stale in output.parent.glob(output.name + "*"):
        stale.unlink()
    counts = output.parent / "callgrind.out"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={counts}",
            # The interpreter itself, not a launcher script in front of it (pyenv's shim).
            os.path.realpath(sys.executable),
            "-m",
            "shoal",
            "fetch",
            str(urls),
            "-o",
            str(output),
            "-q",
        ],
        env={**os.environ, "PYTHONPATH": str(src)},
        check=True,
        timeout=1800,
        capture_output=True,
        text=True,
    )
    counts.unlink(missing_ok=True)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr}")


def compare_instructions(
    trees: dict[str, Path], urls: Path, scratch: Path, requests: int, rounds: int
) -> None:
    one = scratch / "one.txt"
    one.write_text(urls.read_text().splitlines()[0] + "\n")
    per_request: dict[str, list[float]] = {name: [] for name in trees}
    start_up: dict[str, list[int]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, src in trees.items():
            alone = instructions_of_run(src, one, scratch / "out.jsonl")
            many = instructions_of_run(src, urls, scratch / "out.jsonl")
            start_up[name].append(alone)
            per_request[name].append((many - alone) / (requests - 1))
    for name in trees:
        values = per_request[name]
        print(
            f"{name:>12}: instructions/request median {statistics.median(values):,.0f}"
            f" ({' '.join(f'{v:,.0f}' for v in values)});"
            f" a one-URL job {statistics.median(start_up[name]) / 1e6:,.0f} M"
        )
    theirs, ours = list(trees)
    each = statistics.median(per_request[ours]) / statistics.median(per_request[theirs])
    start = statistics.median(start_up[ours]) / statistics.median(start_up[theirs])
    print(f"this tree / {theirs}: per request {each:.3f}, one-URL job {start:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the commit to compare with (e.g. HEAD~3, a tag)")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (valgrind), not CPU time"
    )
    args = parser.parse_args()
    if args.requests is None:
        args.requests = 2_000 if args.instructions else 20_000
    if args.rounds is None:
        args.rounds = 1 if args.instructions else 8
    if args.requests < 2:
        parser.error("--requests: at least 2")
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
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
        if args.instructions:
            compare_instructions(trees, urls, scratch, args.requests, args.rounds)
            return
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
