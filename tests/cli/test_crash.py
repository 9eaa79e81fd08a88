"""Crash consistency: ``shoal fetch`` killed with SIGKILL at random moments, then resumed.

Each test is one seeded round of ``tests/crashloop.py``: a few thousand URLs (duplicates,
malformed lines, requests that end as failures) against a local server answering in a few
milliseconds, killed at most 12 times within 60 s, at random points from start-up
to mid-flight, with the output sometimes left torn as a kill inside a write leaves it. After
every kill the journal (read-only) must agree with itself and with the output; the requests
it holds as final must never reach the server again; the completed job must hold every
input request exactly once, in the output and in the journal; one more run must be a no-op.
``bench/soak.py`` runs the same loop for longer.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.command import RESOLVE, finish, lines, shoal, start
from tests.crashloop import CrashRound, CrashServer, Settings, hit_key
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving


@pytest.fixture
async def crash_server() -> AsyncIterator[CrashServer]:
    server = CrashServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("seed", "stdin", "warc"),
    [
        pytest.param(20240611, False, False, id="file"),
        pytest.param(4, True, False, id="stdin"),
        # With --warc: the archive too is torn at kills, and ends holding each response once.
        pytest.param(77, False, True, id="warc"),
    ],
)
async def test_random_kills_then_resume_is_exactly_once(
    crash_server: CrashServer, tmp_path: Path, seed: int, stdin: bool, warc: bool
) -> None:
    settings = Settings(urls=3000, kills=12, max_seconds=60, stdin=stdin, concurrency=24, warc=warc)
    crash = CrashRound(crash_server, tmp_path, settings, random.Random(seed), say=print)
    report = await crash.run()
    # The kills landed inside the job: several before it finished, some with it part done;
    # the seed aimed them at every moment; torn outputs were repaired.
    assert report.kills >= 6, report.kill_lines
    assert report.partial_kills >= 3, report.kill_lines
    assert min(report.aimed[mode] for mode in ("early", "journal", "flight")) >= 1, report.aimed
    assert report.tears >= 1, report.kill_lines
    if stdin:  # stdin was a pipe in some runs, a regular file in others
        assert set(report.sources) == {"stdin pipe", "stdin file"}, report.sources


def journaled_attempts(journal: Path) -> int:
    """The most attempts a request of a SQLite journal has made (0 before it has any)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT coalesce(max(attempts), 0) FROM requests").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet
        return 0


async def test_retry_budget_and_attempts_survive_a_kill(
    server: Misbehaving, tmp_path: Path
) -> None:
    # Always 503 with Retry-After: 2; one retry allowed. The kill comes while the request
    # waits out its Retry-After, once the journal holds its first attempt.
    path = "/retry-after/budget"
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(server.url(f"{path}?status=503&after=2&fail=99")))
    args = ("fetch", str(source), "-o", str(output), "--retries", "1", *RESOLVE)
    process = await start(*args, "--progress", "off")
    try:
        await wait_until(lambda: server.log.paths[path] == 1, 20, "the first attempt")
        journal = Path(f"{output}.journal")
        await wait_until(lambda: journaled_attempts(journal) == 1, 20, "the attempt journaled")
        process.kill()
        killed = await finish(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert killed.code == -signal.SIGKILL
    assert server.log.paths[path] == 1
    rerun = await shoal(*args, "--progress", "off")
    assert rerun.code == 0, rerun.stderr  # a 503 that arrives, without --fail
    [record] = read_records(output)
    assert record["status"] == 503
    # The one retry is the last attempt, whichever run makes it; the record counts both.
    assert server.log.paths[path] == 2
    assert record["attempts"] == 2


# -- several processes ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from ``/proc``)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{name}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(name))
    return found


def _plan_folder(pid: int) -> Path | None:
    """The folder of the plan a ``shoal.cli.shard`` worker runs (its first argument)."""
    with contextlib.suppress(OSError, IndexError):
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return Path(arguments[arguments.index(b"shoal.cli.shard") + 1].decode()).parent
    return None


def _running_worker(pid: int) -> bool:
    """Whether ``pid`` is still a live ``shoal.cli.shard`` worker (not a zombie, not reused)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return state != "Z" and b"shoal.cli.shard" in command


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc (Linux)")
async def test_killed_parent_with_processes_leaves_no_worker_and_resumes(
    crash_server: CrashServer, tmp_path: Path
) -> None:
    # At most 40 requests/s (-c 4, 100 ms each): at least 9 s of work is left at the kill, so
    # a worker left behind is still running when the 5 s wait for its end is over.
    urls = [f"http://h{n % 8}.test:{crash_server.port}/ok/{n}?ms=100" for n in range(400)]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), "-c", "4", "-p", "2", *RESOLVE)
    process = await start(*args, "--progress", "off")
    workers: list[int] = []
    plans: set[Path] = set()
    try:
        await wait_until(lambda: crash_server.total >= 20, 20, "the workers' first requests")
        workers = _children(process.pid)
        assert len(workers) == 2, workers
        # A killed parent cannot remove its plan's temporary folder; its workers do (and
        # the test does, should they not).
        plans = {folder for folder in map(_plan_folder, workers) if folder is not None}
        process.kill()
        killed = await finish(process)
        assert killed.code == -signal.SIGKILL
        await wait_until(
            lambda: not any(_running_worker(pid) for pid in workers), 5, "the workers to end"
        )
        rerun = await shoal(*args, "--progress", "off", within_s=90)
        assert rerun.code == 0, rerun.stderr
        assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
        assert all(1 <= crash_server.hits[hit_key(url)] <= 2 for url in urls)
        # The orphaned workers removed the plan's folder their coordinator could not.
        assert plans and not any(folder.exists() for folder in plans)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in workers:  # a worker left behind is ended here, by its own id
            if _running_worker(pid):
                os.kill(pid, signal.SIGKILL)
        await wait_until(
            lambda: not any(_running_worker(pid) for pid in workers), 10, "the workers' end"
        )
        for folder in plans:
            if folder.name.startswith("shoal-plan-"):
                shutil.rmtree(folder, ignore_errors=True)
