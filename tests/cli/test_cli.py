"""The ``shoal`` command end to end: a real process against the misbehaving server.

The server runs on the test's event loop and the command runs as a subprocess started with
asyncio (:mod:`tests.command`), so the server keeps serving while the test waits for the
command. Host names end in ``.test`` and ``--resolve '*.test:127.0.0.1'`` maps them to the
server.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.command import (
    RESOLVE,
    finish,
    line_count,
    lines,
    ok_urls,
    shoal,
    shoal_on_terminal,
    start,
)
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving

# -- stdin, stdout and exit codes --------------------------------------------------------------


async def test_stdin_to_stdout_records_and_exit_0(server: Misbehaving) -> None:
    urls = ok_urls(server, 20)
    done = await shoal(
        "fetch", *RESOLVE, "--progress", "off", stdin=lines("# a comment", "", *urls)
    )
    assert done.code == 0, done.stderr
    records = done.records()  # every stdout line is a JSON record, nothing else
    assert Counter(record["url"] for record in records) == Counter(urls)
    assert all(record["status"] == 200 and record["error"] is None for record in records)
    assert "shoal summary" in done.stderr
    assert "20 this run: 20 ok, 0 failed" in done.stderr
    assert server.log.total == 20


async def test_some_failures_exit_1(server: Misbehaving) -> None:
    good = server.url("/ok")
    done = await shoal(
        "fetch",
        *RESOLVE,
        "--retries",
        "0",
        "--progress",
        "off",
        stdin=lines(good, "not a url", "http://a.test:1/"),
    )
    assert done.code == 1, done.stderr
    records = {record["line"]: record for record in done.records()}
    assert sorted(records) == [1, 2, 3]
    assert records[1]["error"] is None and records[1]["status"] == 200
    assert records[2]["error"]["kind"] == "invalid_url"
    assert records[3]["error"]["kind"] == "connect" and records[3]["attempts"] == 1
    assert "2 failed" in done.stderr


async def test_fail_flag_makes_http_errors_failures(server: Misbehaving) -> None:
    url = server.url("/status/404")
    plain = await shoal("fetch", *RESOLVE, "--progress", "off", stdin=lines(url))
    failing = await shoal("fetch", *RESOLVE, "--fail", "--progress", "off", stdin=lines(url))
    assert plain.code == 0 and plain.records()[0]["status"] == 404
    assert failing.code == 1
    assert failing.records()[0]["error"]["kind"] == "http_status"


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (("-c", "0"), "--concurrency"),
        (("--per-host", "0"), "--per-host"),
        (("--max-bytes", "junk"), "--max-bytes"),
        (("--retry-on", "nonsense"), "--retry-on"),
        (("-H", "NoColonHere"), "--header"),
        (("--resolve", "a.test:nowhere"), "--resolve"),
        (("--timeout", "0"), "--timeout"),
        (("--proxy", "socks5://p.test:1080"), "--proxy"),
    ],
)
async def test_bad_option_value_exit_2(
    server: Misbehaving, option: tuple[str, str], named: str
) -> None:
    done = await shoal("fetch", *RESOLVE, *option, stdin=lines(server.url("/ok")))
    assert done.code == 2, done.stderr
    assert named in done.stderr, done.stderr
    assert done.stdout == b""
    assert server.log.total == 0


async def test_missing_input_file_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    done = await shoal("fetch", str(missing), "-o", str(tmp_path / "out.jsonl"))
    assert done.code == 2
    assert "cannot read" in done.stderr and "nope.txt" in done.stderr


async def test_headers_and_user_agent_are_sent(server: Misbehaving) -> None:
    done = await shoal(
        "fetch",
        *RESOLVE,
        "-H",
        "X-Shoal-Test: yes",
        "--user-agent",
        "tester/1",
        "--progress",
        "off",
        stdin=lines(server.url("/ok")),
    )
    assert done.code == 0, done.stderr
    [headers] = server.log.headers
    assert headers["X-Shoal-Test"] == "yes"
    assert headers["User-Agent"] == "tester/1"


async def test_stdin_redirected_from_a_regular_file(server: Misbehaving, tmp_path: Path) -> None:
    urls = ok_urls(server, 5)
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*urls))
    descriptor = os.open(source, os.O_RDONLY)
    try:
        process = await start("fetch", *RESOLVE, "--progress", "off", stdin=descriptor)
    finally:
        os.close(descriptor)
    done = await finish(process)
    assert done.code == 0, done.stderr
    assert Counter(record["url"] for record in done.records()) == Counter(urls)


# -- output file, journal, resume --------------------------------------------------------------


async def test_output_file_and_journal_then_rerun_is_a_no_op(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = ok_urls(server, 15)
    output = tmp_path / "out.jsonl"
    args = ("fetch", "-o", str(output), *RESOLVE, "--progress", "off")
    first = await shoal(*args, stdin=lines(*urls))
    assert first.code == 0, first.stderr
    assert first.stdout == b""
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    assert (tmp_path / "out.jsonl.journal").is_file()
    hits = server.log.total
    written = output.read_bytes()
    again = await shoal(*args, stdin=lines(*urls))
    assert again.code == 0, again.stderr
    assert server.log.total == hits == 15
    assert output.read_bytes() == written
    assert "15 already final" in again.stderr
    assert "0 this run" in again.stderr


async def test_explicit_job_path_with_stdout(server: Misbehaving, tmp_path: Path) -> None:
    urls = ok_urls(server, 5)
    journal = tmp_path / "my.journal"
    args = ("fetch", "--job", str(journal), *RESOLVE, "--progress", "off")
    first = await shoal(*args, stdin=lines(*urls))
    again = await shoal(*args, stdin=lines(*urls))
    assert first.code == 0 and again.code == 0
    assert journal.is_file()
    assert Counter(record["url"] for record in first.records()) == Counter(urls)
    assert again.stdout == b""  # everything was already written
    assert server.log.total == 5


async def test_restart_discards_the_journal(server: Misbehaving, tmp_path: Path) -> None:
    urls = ok_urls(server, 8)
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), *RESOLVE, "--progress", "off")
    assert (await shoal(*args)).code == 0
    assert server.log.total == 8
    restarted = await shoal(*args, "--restart")
    assert restarted.code == 0, restarted.stderr
    assert server.log.total == 16  # fetched again
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    assert (await shoal(*args)).code == 0
    assert server.log.total == 16  # the new journal is complete


async def test_journal_of_another_input_exit_2(server: Misbehaving, tmp_path: Path) -> None:
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_bytes(lines(*ok_urls(server, 3, "a")))
    second.write_bytes(lines(*ok_urls(server, 3, "b")))
    output = tmp_path / "out.jsonl"
    common = ("-o", str(output), *RESOLVE, "--progress", "off")
    assert (await shoal("fetch", str(first), *common)).code == 0
    written = output.read_bytes()
    done = await shoal("fetch", str(second), *common)
    assert done.code == 2
    assert "journal of another input" in done.stderr
    assert "--restart" in done.stderr
    assert output.read_bytes() == written
    assert server.log.total == 3


# -- interrupts --------------------------------------------------------------------------------


async def _interrupt_then_rerun(
    server: Misbehaving, tmp_path: Path, *, signals: int, from_stdin: bool, count: int, delay: float
) -> None:
    # One host per URL: the server's per-host count is then a per-URL count.
    urls = [server.url(f"/delay?s={delay}", host=f"s{n}.test") for n in range(count)]
    output = tmp_path / "out.jsonl"
    data = lines(*urls)
    source = tmp_path / "urls.txt"
    source.write_bytes(data)
    where = ("-",) if from_stdin else (str(source),)
    limits = ("-c", "10", "--per-host", "10")
    args = ("fetch", *where, "-o", str(output), *limits, *RESOLVE, "--progress", "off")
    process = await start(*args)
    try:
        assert process.stdin is not None
        if from_stdin:
            process.stdin.write(data)
            await process.stdin.drain()
        process.stdin.close()
        await wait_until(lambda: line_count(output) >= 20, 10, "some records")
        process.send_signal(signal.SIGINT)
        for _ in range(signals - 1):
            await asyncio.sleep(0.02)
            process.send_signal(signal.SIGINT)
        interrupted = await finish(process, within_s=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert interrupted.code == 130, interrupted.stderr
    assert "interrupted" in interrupted.stderr
    partial = read_records(output)
    assert 20 <= len(partial) < count
    assert len({record["url"] for record in partial}) == len(partial)
    rerun = await shoal(*args, stdin=data if from_stdin else b"")
    assert rerun.code == 0, rerun.stderr
    assert f"{len(partial):,} already final" in rerun.stderr
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    requests = [server.log.hosts[f"s{n}.test"].requests for n in range(count)]
    if signals == 1:
        assert set(requests) == {1}  # in-flight requests finished: none was sent twice
    else:
        # The second signal cancelled requests in flight; the rerun sent them again.
        assert set(requests) == {1, 2}


async def test_sigint_then_rerun_is_exactly_once(server: Misbehaving, tmp_path: Path) -> None:
    await _interrupt_then_rerun(
        server, tmp_path, signals=1, from_stdin=False, count=300, delay=0.05
    )


async def test_double_sigint_then_rerun_is_exactly_once(
    server: Misbehaving, tmp_path: Path
) -> None:
    # Longer requests, so the second signal surely lands while some are in flight.
    await _interrupt_then_rerun(server, tmp_path, signals=2, from_stdin=True, count=100, delay=0.2)


async def test_killed_run_with_torn_output_then_rerun_is_exactly_once(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url("/delay?s=0.05", host=f"k{n}.test") for n in range(150)]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), "-c", "10", *RESOLVE, "--progress", "off")
    process = await start(*args)
    try:
        assert process.stdin is not None
        process.stdin.close()
        await wait_until(lambda: line_count(output) >= 20, 10, "some records")
        process.kill()  # no chance to clean up
        await asyncio.wait_for(process.wait(), 5)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL
    with output.open("ab") as file:
        file.write(b'{"url": "torn')  # as if the crash cut a record in half
    rerun = await shoal(*args)
    assert rerun.code == 0, rerun.stderr
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    assert all(1 <= server.log.hosts[f"k{n}.test"].requests <= 2 for n in range(150))


# -- progress and summary ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "terminal", "shown"),
    [
        ("off", True, False),
        ("auto", False, False),
        ("auto", True, True),
        ("on", True, True),
    ],
)
async def test_progress_modes(server: Misbehaving, mode: str, terminal: bool, shown: bool) -> None:
    urls = ok_urls(server, 4)
    run = shoal_on_terminal if terminal else shoal  # stderr on a real pty, or a pipe
    done = await run("fetch", *RESOLVE, "--progress", mode, stdin=lines(*urls))
    assert done.code == 0, done.stderr
    assert ("in flight" in done.stderr) is shown, done.stderr
    assert "shoal summary" in done.stderr
    assert len(done.records()) == 4  # the progress never goes to stdout


async def test_quiet_suppresses_summary(server: Misbehaving) -> None:
    done = await shoal("fetch", *RESOLVE, "-q", stdin=lines(*ok_urls(server, 3)))
    assert done.code == 0
    assert "shoal summary" not in done.stderr
    assert done.stderr.strip() == ""
    assert len(done.records()) == 3


# -- demo --------------------------------------------------------------------------------------


async def test_demo_runs(tmp_path: Path) -> None:
    output = tmp_path / "demo.jsonl"
    done = await shoal("demo", "--progress", "off", "-n", "200", "-o", str(output), within_s=30)
    assert done.code == 0, done.stderr
    assert "demo check passed" in done.stderr
    records = read_records(output)
    assert len(records) == len({record["url"] for record in records}) > 150
