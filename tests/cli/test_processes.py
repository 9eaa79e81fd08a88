"""``shoal fetch --processes N``: one job over several worker processes, seen as one."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from pathlib import Path

from tests.command import RESOLVE, line_count, shoal, start
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving

HOSTS = 5


def write_input(path: Path, server: Misbehaving, count: int, delay_s: float) -> list[str]:
    urls = [
        server.url(f"/delay?s={delay_s}&n={n}", host=f"p{n % HOSTS}.test") for n in range(count)
    ]
    # Every request is distinct by its query; a few duplicates must still be fetched once.
    path.write_text("\n".join([*urls, *urls[:7]]) + "\n")
    return urls


def job(path: Path, output: Path, *extra: str) -> tuple[str, ...]:
    return (
        "fetch", str(path), "-o", str(output), *RESOLVE, "-c", "12", "--per-host", "3",
        "--progress", "off", *extra,
    )  # fmt: skip


async def test_two_processes_keep_caps_and_write_each_record_once(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = write_input(tmp_path / "urls.txt", server, 150, 0.02)
    output = tmp_path / "out.jsonl"
    done = await shoal(*job(tmp_path / "urls.txt", output, "--processes", "2"), within_s=60)
    assert done.code == 0, done.stderr
    records = read_records(output)
    assert Counter(r["url"] for r in records) == Counter(urls)
    assert server.log.total == len(urls)  # the duplicates were not fetched
    peaks = [server.log.hosts[f"p{n}.test"].peak for n in range(HOSTS)]
    assert max(peaks) <= 3, peaks  # the per-host cap holds over both processes
    assert max(peaks) >= 2, peaks  # (and the test can see a cap being reached)
    assert server.log.peak <= 12
    assert "150 this run" in done.stderr  # one summary for the whole job
    assert not [n for n in os.listdir(tmp_path) if ".part-" in n]  # joined, then removed


async def test_interrupted_multi_process_job_resumes_exactly_once(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = write_input(tmp_path / "urls.txt", server, 240, 0.1)
    output = tmp_path / "out.jsonl"
    process = await start(*job(tmp_path / "urls.txt", output, "--processes", "2"))
    parts = [tmp_path / f"out.jsonl.part-{k}-of-2" for k in (1, 2)]
    await wait_until(lambda: sum(line_count(p) for p in parts) >= 20, 30, "some records")
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130, err.decode()
    assert not output.exists()  # the output is joined only when the job is complete
    hits_before = server.log.total
    assert hits_before < len(urls)
    done = await shoal(*job(tmp_path / "urls.txt", output, "--processes", "2"), within_s=60)
    assert done.code == 0, done.stderr
    assert Counter(r["url"] for r in read_records(output)) == Counter(urls)
    fetched = Counter(path for path, count in server.log.paths.items() for _ in range(count))
    assert sum(fetched.values()) == server.log.total
    # Requests that finished before the interrupt were not fetched again.
    assert server.log.total <= len(urls) + 12  # at most the ones in flight at the stop


async def test_resume_with_another_process_count_is_refused(
    server: Misbehaving, tmp_path: Path
) -> None:
    write_input(tmp_path / "urls.txt", server, 20, 0)
    output = tmp_path / "out.jsonl"
    first = await shoal(*job(tmp_path / "urls.txt", output, "--processes", "2"), within_s=60)
    assert first.code == 0, first.stderr
    again = await shoal(*job(tmp_path / "urls.txt", output, "--processes", "3"))
    assert again.code == 2
    assert "another number of processes" in again.stderr
    single = await shoal(*job(tmp_path / "urls.txt", output))
    assert single.code == 2
    restarted = await shoal(*job(tmp_path / "urls.txt", output, "--restart"))
    assert restarted.code == 0, restarted.stderr
    assert line_count(output) == 20


async def test_processes_need_a_file_and_enough_concurrency(tmp_path: Path) -> None:
    from_stdin = await shoal("fetch", "-", "--processes", "2", stdin=b"http://a.test/\n")
    assert from_stdin.code == 2
    assert "input file" in from_stdin.stderr
    (tmp_path / "urls.txt").write_text("http://a.test/\n")
    too_many = await shoal("fetch", str(tmp_path / "urls.txt"), "-c", "2", "--processes", "3")
    assert too_many.code == 2
    assert "--processes" in too_many.stderr
    junk = await shoal("fetch", str(tmp_path / "urls.txt"), "--processes", "lots")
    assert junk.code == 2
    assert "--processes" in junk.stderr


async def test_the_progress_of_processes_always_has_a_total(
    server: Misbehaving, tmp_path: Path
) -> None:
    """While a worker has not yet said its total, the combined line shows the input's count
    as an estimate (never ``N done`` alone), and done as the workers' sum."""
    urls = write_input(tmp_path / "urls.txt", server, 60, 0.05)
    output = tmp_path / "out.jsonl"
    done = await shoal(
        *job(tmp_path / "urls.txt", output, "--processes", "2"),
        "--progress", "on", "--progress-interval", "0.05",
        within_s=60,
    )  # fmt: skip
    assert done.code == 0, done.stderr
    shown = [line for line in done.stderr.split("\n") if line.startswith("shoal: [")]
    assert len(shown) >= 5, done.stderr
    counts = [re.match(r"shoal: \[[\d:]+\] ([\d,]+)(/~?[\d,]+| done)", line) for line in shown]
    assert all(found is not None for found in counts), shown
    totals = [found.group(2) for found in counts if found is not None]
    assert " done" not in totals, shown
    assert totals[-1] == f"/{len(urls)}", shown  # the workers' exact shares, summed
    finished = [int(found.group(1)) for found in counts if found is not None]
    assert finished == sorted(finished) and finished[-1] <= len(urls), shown
