"""A full disk or an unwritable output or journal: a clean stop, then a resume.

The README promises exit code 3 for "a fault it cannot work around (output or journal
unwritable, disk full)", with the journal intact and the same command resuming; a bad
option value is exit 2 and names the option. The faults are real ones, made for one
``shoal`` process at a time:

* a file-size limit (``RLIMIT_FSIZE``): a write past it fails with ``EFBIG``;
* ``/dev/full``, where every write fails with ``ENOSPC`` (a full disk);
* read-only files and folders. Root ignores file modes, so when the tests run as root the
  command runs without ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH``, and the modes hold
  for it as they do for anyone else.

A small launcher applies the limit and drops the capabilities, then ``exec``s ``python -m
shoal`` in the same process, so the exit status is shoal's own (a death by ``SIGXFSZ``
would show as -25).

Which file reaches a size limit first is not a free choice: the journal holds every record
too, and SQLite writes whole pages to its write-ahead log, so from a fresh start the journal
always outgrows the output. To make the output reach the limit first, a first run builds up
a large output and stops; the limited run then starts with the output just under the limit
and the write-ahead log empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import stat
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.command import RESOLVE, Finished, environment, finish, line_count, lines, start
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving

#: Applies ``RLIMIT_FSIZE`` (argv[1], 0 for none) and drops the file-mode capabilities of
#: root (argv[2] == "1"), then becomes the command in argv[3:].
_LAUNCHER = """
import ctypes, os, resource, sys
size, drop, command = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
if size:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
if drop and os.geteuid() == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit(f"cannot drop capability {capability}: errno {ctypes.get_errno()}")
os.execv(command[0], command)
"""
QUIET = ("--progress", "off")
KIB = 1024

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses RLIMIT_FSIZE, prctl and /dev/full"
)


async def launch(
    *args: str, size_limit: int = 0, drop_root: bool = False, stdin: bytes = b""
) -> Finished:
    """Run ``shoal ARGS`` under a file-size limit and/or without root's file-mode powers."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LAUNCHER,
        str(size_limit),
        "1" if drop_root else "0",
        sys.executable,
        "-m",
        "shoal",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(),
    )
    return await finish(process, stdin, within_s=30)


async def check_read_only_holds(path: Path) -> None:
    """Skip when a read-only file or folder is writable to the command anyway."""
    probe = (sys.executable, "-c", f"import os, sys; sys.exit(os.access({str(path)!r}, 2))")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LAUNCHER, "0", "1", *probe, env=environment()
    )
    if await process.wait() != 0:
        pytest.skip("file modes are not enforced for this user (root without prctl?)")


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` made read-only for the block (and writable again after it)."""
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        yield folder
    finally:
        folder.chmod(stat.S_IRWXU)


def assert_clean_stop(done: Finished, *fragments: str) -> None:
    """Exit 3 with a message, not a crash and not a signal."""
    assert done.code != -signal.SIGXFSZ, "killed by SIGXFSZ"
    assert done.code == 3, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "internal error" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def inspect_journal(journal: Path) -> tuple[str, list[str]]:
    """The integrity check of a journal, and the URLs of its committed records.

    A copy is opened (the database and its write-ahead log), so the journal the next run
    resumes from is exactly the one the stopped run left.
    """
    copy = journal.with_name(journal.name + ".inspected")
    for suffix in ("", "-wal"):
        original = Path(str(journal) + suffix)
        if original.exists():
            shutil.copyfile(original, str(copy) + suffix)
    try:
        with contextlib.closing(sqlite3.connect(copy)) as db:
            (check,) = db.execute("PRAGMA integrity_check").fetchone()
            rows = db.execute("SELECT record FROM records ORDER BY done_seq").fetchall()
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(copy) + suffix).unlink(missing_ok=True)
    return str(check), [orjson.loads(record)["url"] for (record,) in rows]


def keyed_urls(server: Misbehaving, count: int, prefix: str, hosts: int = 3) -> list[str]:
    """Distinct quick URLs, each counted by the server under its own path."""
    return [
        server.url(f"/flaky/{prefix}{n}?fail=0", host=f"h{n % hosts}.test") for n in range(count)
    ]


def hits(server: Misbehaving, url: str) -> int:
    return server.log.paths[url.split(f":{server.port}", 1)[1].split("?", 1)[0]]


def assert_exactly_once(output: Path, urls: list[str]) -> None:
    records = read_records(output)  # every line whole: a torn one would not parse
    assert Counter(record["url"] for record in records) == Counter(urls)
    assert all(record["error"] is None and record["status"] == 200 for record in records)


def assert_fetched_once_if_recorded(
    server: Misbehaving, urls: list[str], recorded: set[str]
) -> None:
    """What was committed before the fault is never fetched again; what was in flight when
    the run stopped may be fetched once more; nothing is fetched three times."""
    assert recorded <= set(urls)
    for url in urls:
        count = hits(server, url)
        if url in recorded:
            assert count == 1, url
        else:
            assert 1 <= count <= 2, (url, count)


# -- unwritable paths at the start -------------------------------------------------------------


async def test_existing_read_only_output_file_is_a_usage_error(
    server: Misbehaving, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"precious\n")
    output.chmod(stat.S_IRUSR)
    await check_read_only_holds(output)
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*keyed_urls(server, 3, "u")))
    done = await launch("fetch", str(source), "-o", str(output), *RESOLVE, *QUIET, drop_root=True)
    assert done.code == 2, done.stderr
    assert "--output" in done.stderr and str(output) in done.stderr, done.stderr
    assert "not writable" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert output.read_bytes() == b"precious\n"
    assert not (tmp_path / "out.jsonl.journal").exists()
    assert server.log.total == 0


async def test_output_in_a_read_only_folder_is_a_usage_error_then_runs(
    server: Misbehaving, tmp_path: Path
) -> None:
    """An output that cannot be made is refused before anything runs or is written (exit 2,
    naming the option); once its folder is writable, the same command runs."""
    urls = keyed_urls(server, 20, "u")
    source, journal = tmp_path / "urls.txt", tmp_path / "job.journal"
    source.write_bytes(lines(*urls))
    folder = tmp_path / "locked"
    folder.mkdir()
    output = folder / "out.jsonl"
    args = ("fetch", str(source), "-o", str(output), "--job", str(journal), *RESOLVE, *QUIET)
    with read_only(folder):
        await check_read_only_holds(folder)
        refused = await launch(*args, drop_root=True)
    assert refused.code == 2, refused.stderr
    assert "Invalid value for '-o/--output'" in refused.stderr, refused.stderr
    assert f"directory {folder} is not writable" in refused.stderr
    assert "journal is intact" not in refused.stderr
    assert not output.exists() and not journal.exists()
    assert server.log.total == 0

    ran = await launch(*args, drop_root=True)
    assert ran.code == 0, ran.stderr
    assert_exactly_once(output, urls)
    assert_fetched_once_if_recorded(server, urls, set(urls))


@pytest.mark.parametrize("journal_option", [False, True], ids=["beside-the-output", "job-option"])
async def test_journal_in_a_read_only_folder_is_a_usage_error(
    server: Misbehaving, tmp_path: Path, journal_option: bool
) -> None:
    """A journal that cannot be made is a usage error naming the option (exit 2), not a
    fault with a journal said to be intact: there is none."""
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*keyed_urls(server, 5, "u")))
    folder = tmp_path / "locked"
    folder.mkdir()
    if journal_option:
        journal = folder / "job.journal"
        options: tuple[str, ...] = ("-o", str(tmp_path / "out.jsonl"), "--job", str(journal))
        option = "--job"
    else:
        journal = folder / "out.jsonl.journal"
        options = ("-o", str(folder / "out.jsonl"))
        option = "-o/--output"
    with read_only(folder):
        await check_read_only_holds(folder)
        done = await launch("fetch", str(source), *options, *RESOLVE, *QUIET, drop_root=True)
    assert done.code == 2, done.stderr
    assert f"Invalid value for '{option}'" in done.stderr and "not writable" in done.stderr
    assert "journal is intact" not in done.stderr and not journal.exists()
    assert server.log.total == 0


async def _finished_job_with_a_read_only_journal(
    server: Misbehaving, tmp_path: Path
) -> tuple[tuple[str, ...], Path, list[str]]:
    """A finished job whose journal file (only) then turns read-only, and a run of it."""
    urls = keyed_urls(server, 5, "u")
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    journal = tmp_path / "out.jsonl.journal"
    args = ("fetch", str(source), "-o", str(output), *RESOLVE, *QUIET)
    first = await launch(*args)
    assert first.code == 0, first.stderr
    journal.chmod(stat.S_IRUSR)
    await check_read_only_holds(journal)
    stopped = await launch(*args, drop_root=True)
    assert_clean_stop(stopped, "cannot write journal", str(journal))
    assert server.log.total == len(urls)
    assert_exactly_once(output, urls)
    return args, journal, urls


async def test_read_only_journal_file_stops_with_exit_3(
    server: Misbehaving, tmp_path: Path
) -> None:
    await _finished_job_with_a_read_only_journal(server, tmp_path)


async def test_read_only_journal_file_made_writable_again_resumes(
    server: Misbehaving, tmp_path: Path
) -> None:
    args, journal, urls = await _finished_job_with_a_read_only_journal(server, tmp_path)
    journal.chmod(stat.S_IRUSR | stat.S_IWUSR)
    resumed = await launch(*args, drop_root=True)
    assert resumed.code == 0, resumed.stderr
    assert server.log.total == len(urls)


# -- a full disk -------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_full_disk_for_the_output_stops_with_exit_3_then_resumes(
    server: Misbehaving, tmp_path: Path
) -> None:
    """The output is a link to /dev/full (every write: ENOSPC); then space is "freed" by
    removing the link, and the same command finishes the job."""
    urls = keyed_urls(server, 1000, "u")
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    output.symlink_to("/dev/full")
    journal = tmp_path / "out.jsonl.journal"
    # --job: an output that is not a regular file gets a temporary journal by default.
    args: tuple[str, ...] = ("fetch", str(source), "-o", str(output), "--job", str(journal))
    args += ("-c", "4", *RESOLVE, *QUIET)
    stopped = await launch(*args)
    assert_clean_stop(stopped, "cannot write output", "No space left on device")
    check, recorded = inspect_journal(journal)
    assert check == "ok"
    assert 0 < len(recorded) < len(urls), "the fault should come mid-run"

    output.unlink()
    resumed = await launch(*args)
    assert resumed.code == 0, resumed.stderr
    assert f"{len(recorded):,} already final" in resumed.stderr, resumed.stderr
    assert_exactly_once(output, urls)
    assert_fetched_once_if_recorded(server, urls, set(recorded))


# -- a file-size limit -------------------------------------------------------------------------


async def test_size_limit_hit_by_the_output_stops_with_exit_3_then_resumes(
    server: Misbehaving, tmp_path: Path
) -> None:
    # Spread over many hosts, so no host has a backlog while the pipe stays open (see
    # test_stdin_backlog.py for what happens then).
    first_part = keyed_urls(server, 1500, "a", hosts=50)
    urls = first_part + keyed_urls(server, 600, "b")
    output = tmp_path / "out.jsonl"
    journal = tmp_path / "out.jsonl.journal"
    args = ("fetch", "-", "-o", str(output), "-c", "4", *RESOLVE, *QUIET)

    # A first run from stdin records the first part, then stops on an interrupt with
    # nothing in flight: the output is large, the journal's write-ahead log is empty.
    process = await start(*args)
    try:
        assert process.stdin is not None
        process.stdin.write(lines(*first_part))
        await process.stdin.drain()
        await wait_until(lambda: line_count(output) == len(first_part), 20, "the first part")
        process.send_signal(signal.SIGINT)
        interrupted = await finish(process, within_s=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert interrupted.code == 130, interrupted.stderr
    before = output.stat().st_size

    # The limit leaves room for two or three more records in the output, and far more
    # than the journal writes before its first commit of new records.
    limit = before + 1000
    stopped = await launch(*args, size_limit=limit, stdin=lines(*urls))
    assert_clean_stop(stopped, "cannot write output", "File too large")
    assert before < output.stat().st_size <= limit  # a partial record may be cut off
    check, recorded = inspect_journal(journal)
    assert check == "ok"
    assert len(first_part) < len(recorded) < len(urls), "the fault should come mid-run"
    assert set(first_part) <= set(recorded)

    resumed = await launch(*args, stdin=lines(*urls))
    assert resumed.code == 0, resumed.stderr
    assert f"{len(recorded):,} already final" in resumed.stderr, resumed.stderr
    assert_exactly_once(output, urls)
    assert_fetched_once_if_recorded(server, urls, set(recorded))


@pytest.mark.parametrize("journal_option", [False, True], ids=["beside-the-output", "job-option"])
async def test_size_limit_hit_by_the_journal_stops_with_exit_3_then_resumes(
    server: Misbehaving, tmp_path: Path, journal_option: bool
) -> None:
    urls = keyed_urls(server, 1500, "u")
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    journal = tmp_path / ("job.sqlite" if journal_option else "out.jsonl.journal")
    where = ("--job", str(journal)) if journal_option else ()
    args = ("fetch", str(source), "-o", str(output), *where, "-c", "4", *RESOLVE, *QUIET)
    # Above the size of the whole output (about 790 KB), below what the journal's
    # write-ahead log reaches before the end: only the journal can hit it.
    limit = 1024 * KIB

    stopped = await launch(*args, size_limit=limit)
    assert_clean_stop(stopped, "cannot write journal", str(journal))
    check, recorded = inspect_journal(journal)
    assert check == "ok"
    assert len(recorded) < len(urls), "the fault should come mid-run"
    # The output holds no record the journal lacks.
    assert {record["url"] for record in read_records(output)} <= set(recorded)

    resumed = await launch(*args)
    assert resumed.code == 0, resumed.stderr
    assert_exactly_once(output, urls)
    assert output.stat().st_size < limit  # the premise: the output alone fits
    assert_fetched_once_if_recorded(server, urls, set(recorded))
