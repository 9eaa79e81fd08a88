"""The command line refuses what it cannot do safely, and stays responsive on a quiet pipe."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.command import RESOLVE, finish, line_count, shoal, start
from tests.helpers import wait_until
from tests.servers import Misbehaving


async def test_second_run_of_the_same_job_is_refused(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url(f"/delay?s=0.2&n={n}") for n in range(40)]
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    args = ("fetch", str(tmp_path / "urls.txt"), "-o", str(tmp_path / "out.jsonl"), *RESOLVE)
    first = await start(*args, "-c", "2", "--per-host", "2")
    await wait_until(lambda: server.log.total >= 1, 10, "the first run to start")
    second = await shoal(*args)
    assert second.code == 2
    assert "in use" in second.stderr
    done = await finish(first, within_s=30)
    assert done.code == 0, done.stderr
    assert line_count(tmp_path / "out.jsonl") == len(urls)


async def test_quiet_stdin_is_fetched_and_interruptible(
    server: Misbehaving, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    process = await start("fetch", "-o", str(output), *RESOLVE, "--progress", "off")
    assert process.stdin is not None
    process.stdin.write((server.url("/ok") + "\n").encode())
    await process.stdin.drain()
    # The line is fetched while stdin stays open and quiet.
    await wait_until(lambda: line_count(output) == 1, 10, "the first record")
    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.wait(), 10)  # and an interrupt ends the run
    assert process.returncode == 130
    process.stdin.close()


async def test_bad_method_is_a_usage_error(tmp_path: Path) -> None:
    done = await shoal("fetch", "--method", "GE T", stdin=b"http://a.test/\n")
    assert done.code == 2
    assert "--method" in done.stderr


async def test_missing_input_with_processes_is_a_usage_error(tmp_path: Path) -> None:
    done = await shoal("fetch", str(tmp_path / "missing.txt"), "--processes", "2")
    assert done.code == 2
    assert "cannot read" in done.stderr
