"""``shoal status --watch [S]``: a running job looked at again and again, with its rate and
an ETA, for a job's journal, a ``--processes`` job's parts and a shared PostgreSQL job."""

from __future__ import annotations

import asyncio
import math
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cli.test_messages import EXIT_PIPE, closed_after_one_line
from tests.command import RESOLVE, finish, line_count, lines, shoal, start
from tests.helpers import wait_until
from tests.postgres import pg_dsn
from tests.servers import Misbehaving

__all__ = ["pg_dsn"]


def slow_job(server: Misbehaving, tmp_path: Path, count: int, *extra: str) -> tuple[str, ...]:
    """``shoal fetch`` of ``count`` requests that take 0.1 s each, two at a time."""
    urls = [server.url(f"/delay?s=0.1&n={n}", host=f"w{n % 4}.test") for n in range(count)]
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*urls))
    return ("fetch", str(source), *RESOLVE, "-c", "2", "--progress", "off", "-q", *extra)


def check_paced(looks: list[dict[str, Any]], total: int) -> None:
    """Several looks while the job ran, each after the first with a rate; a finite ETA
    while requests were pending; and the existing fields kept."""
    assert len(looks) >= 3, looks
    assert looks[0]["rate_per_s"] is None and looks[0]["average_per_s"] is None
    running = [look for look in looks[1:] if look["pending"] > 0]
    assert len(running) >= 2, looks
    assert all(look["rate_per_s"] > 0 for look in running[1:]), running
    assert all(look["average_per_s"] > 0 for look in running), running
    etas = [look["eta_s"] for look in running]
    assert all(eta is not None and math.isfinite(eta) and eta > 0 for eta in etas), etas
    assert looks[-1]["ok"] == total and looks[-1]["pending"] == 0
    assert looks[-1]["eta_s"] == 0
    for look in looks:
        assert {"job", "input", "admitted", "ok", "failed", "pending", "running"} <= set(look)


async def test_watch_shows_the_rate_and_an_eta_while_the_job_runs(
    server: Misbehaving, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    process = await start(*slow_job(server, tmp_path, 40, "-o", str(output)))
    try:
        await wait_until(lambda: line_count(output) >= 2, 20, "some records")
        watched = await shoal("status", str(output), "--watch", "0.2", "--json", within_s=40)
    finally:
        done = await finish(process, within_s=40)
    assert done.code == 0, done.stderr
    assert watched.code == 0, watched.stderr
    check_paced(watched.records(), 40)


async def test_watch_in_text_says_the_rate_and_eta(server: Misbehaving, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    process = await start(*slow_job(server, tmp_path, 80, "-o", str(output)))
    try:
        await wait_until(lambda: line_count(output) >= 2, 20, "some records")
        # --watch before JOB, with no interval: JOB is not taken for one.
        watched = await shoal("status", "--watch", str(output), within_s=40)
    finally:
        done = await finish(process, within_s=40)
    assert done.code == 0, done.stderr
    assert watched.code == 0, watched.stderr
    looks = watched.stdout.decode().strip().split("\n\n")
    assert len(looks) >= 2, looks
    assert "rate       -- requests/s (known at the next look), ETA" in looks[0]
    paced = [look for look in looks[1:] if "pending" in look and " 0 pending" not in look]
    assert paced, looks
    for look in paced:
        assert " requests/s (average " in look and "/s since the watch began), ETA " in look
        assert "ETA --" not in look
    assert looks[-1].endswith("state      complete")


async def test_watch_follows_a_job_run_by_processes(server: Misbehaving, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    process = await start(*slow_job(server, tmp_path, 60, "-o", str(output), "-p", "2"))
    parts = [tmp_path / f"out.jsonl.part-{k}-of-2" for k in (1, 2)]
    try:
        await wait_until(lambda: sum(map(line_count, parts)) >= 4, 30, "some records")
        watched = await shoal("status", str(output), "--watch", "0.2", "--json", within_s=40)
    finally:
        done = await finish(process, within_s=40)
    assert done.code == 0, done.stderr
    assert watched.code == 0, watched.stderr
    looks = watched.records()
    check_paced(looks, 60)
    assert "2 parts" in looks[0]["job"]


@pytest.mark.parametrize("form", [("--watch",), ("--watch", "--json"), ("--watch", "3")])
async def test_watch_of_a_finished_job_ends_at_once(
    server: Misbehaving, tmp_path: Path, form: tuple[str, ...]
) -> None:
    output = tmp_path / "out.jsonl"
    done = await shoal(*slow_job(server, tmp_path, 3, "-o", str(output)))
    assert done.code == 0, done.stderr
    watched = await shoal("status", *form, str(output), within_s=2.5)
    assert watched.code == 0, watched.stderr
    if "--json" in form:
        [look] = watched.records()
        assert (look["ok"], look["pending"], look["running"]) == (3, 0, False)
        assert look["rate_per_s"] is None and look["eta_s"] == 0
    else:
        text = watched.stdout.decode()
        assert text.count("state      complete") == 1
        assert "rate       -- requests/s (one look only), ETA 0:00" in text


@pytest.mark.parametrize(
    "interval", [("--watch=-1",), ("--watch", "-1"), ("--watch", "0"), ("--watch=abc",),
                 ("--watch", "2x"), ("--watch=nan",), ("--watch", "1e9")],
)  # fmt: skip
async def test_a_bad_interval_is_refused(tmp_path: Path, interval: tuple[str, ...]) -> None:
    done = await shoal("status", str(tmp_path / "out.jsonl"), *interval)
    assert done.code == 2, done.stderr
    assert "Invalid value for '--watch'" in done.stderr and "Traceback" not in done.stderr


async def test_ctrl_c_ends_the_watch_quietly(server: Misbehaving, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    process = await start(*slow_job(server, tmp_path, 200, "-o", str(output)))
    try:
        await wait_until(lambda: line_count(output) >= 1, 20, "a record")
        watcher = await start("status", str(output), "--watch", "0.2", "--json")
        assert watcher.stdout is not None
        for _ in range(2):
            orjson.loads(await asyncio.wait_for(watcher.stdout.readline(), 10))
        watcher.send_signal(signal.SIGINT)
        watched = await finish(watcher, within_s=10)
    finally:
        process.send_signal(signal.SIGINT)
        stopped = await finish(process, within_s=20)
    assert stopped.code == 130, stopped.stderr
    assert watched.code == 130
    assert watched.stderr == ""  # no traceback, no "Aborted!"


async def test_a_closed_pipe_ends_the_watch_with_the_sigpipe_status(
    server: Misbehaving, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    process = await start(*slow_job(server, tmp_path, 200, "-o", str(output)))
    try:
        await wait_until(lambda: line_count(output) >= 1, 20, "a record")
        code, line, err = await closed_after_one_line(
            "status", str(output), "--watch", "0.2", "--json", cwd=tmp_path
        )
    finally:
        process.send_signal(signal.SIGINT)
        stopped = await finish(process, within_s=20)
    assert stopped.code == 130, stopped.stderr
    assert orjson.loads(line)["running"] is True
    assert code == EXIT_PIPE, err
    assert err == ""


async def test_watch_of_a_shared_job(server: Misbehaving, tmp_path: Path, pg_dsn: str) -> None:
    shared = ("--store", pg_dsn, "--job", "watched")
    # 100 requests (5 s): room for the watcher's start, slower on a shared job (a connection
    # to the database), so that its looks see the job run. (40 left the watcher, started on
    # a loaded machine, only the job's last two requests to see.)
    process = await start(*slow_job(server, tmp_path, 100, *shared))
    try:

        async def started() -> bool:
            seen = await shoal("status", *shared, "--json")
            return seen.code == 0 and orjson.loads(seen.stdout)["ok"] >= 2

        for _ in range(200):  # bounded: 20 s at most
            if await started():
                break
            await asyncio.sleep(0.1)
        watched = await shoal("status", "--watch", "0.2", "--json", *shared, within_s=40)
    finally:
        done = await finish(process, within_s=40)
    assert done.code == 0, done.stderr
    assert watched.code == 0, watched.stderr
    looks = watched.records()
    check_paced(looks, 100)
    assert all("workers" in look and "paused" in look for look in looks)
