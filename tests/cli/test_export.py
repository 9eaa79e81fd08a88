"""``shoal status`` and ``shoal export``: a job read back from its journal."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
from pathlib import Path

import orjson
import pytest

import shoal as shoal_library
from shoal.cli.export import CSV_COLUMNS, MAP_CSV_COLUMNS
from tests.cli.test_messages import EXIT_PIPE, closed_after_one_line
from tests.command import RESOLVE, finish, line_count, lines, ok_urls, shoal, start
from tests.helpers import read_records, wait_until
from tests.postgres import pg_dsn
from tests.servers import Misbehaving

__all__ = ["pg_dsn"]


async def finished_job(server: Misbehaving, tmp_path: Path) -> tuple[Path, list[str]]:
    """A finished job with successes, HTTP errors (``--fail``) and a bad line."""
    urls = [server.url(f"/flaky/e{n}?fail=0") for n in range(6)]
    urls += [server.url("/status/404"), server.url("/status/503"), "ftp://x.test/file"]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    done = await shoal(
        "fetch", str(source), "-o", str(output), *RESOLVE, "--fail", "--retries", "0", "-q"
    )
    assert done.code == 1, done.stderr
    return output, urls


async def test_status_counts_the_job(server: Misbehaving, tmp_path: Path) -> None:
    output, _ = await finished_job(server, tmp_path)
    for job in (str(output), f"{output}.journal"):
        done = await shoal("status", job)
        assert done.code == 0, done.stderr
        text = done.stdout.decode()
        assert f"{output}.journal" in text
        assert "9 admitted: 6 ok, 3 failed, 0 pending" in text
        assert "read to the end" in text
        assert "http_status: 2" in text and "unsupported_scheme: 1" in text
        assert "2xx: 6" in text and "4xx: 1" in text and "5xx: 1" in text


async def test_status_as_json(server: Misbehaving, tmp_path: Path) -> None:
    output, _ = await finished_job(server, tmp_path)
    done = await shoal("status", str(output), "--json")
    data = orjson.loads(done.stdout)
    assert (data["admitted"], data["ok"], data["failed"], data["pending"]) == (9, 6, 3, 0)
    assert data["input_done"] is True
    assert data["by_error"] == {"http_status": 2, "unsupported_scheme": 1}


async def test_status_while_the_job_runs(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url(f"/delay?s=0.2&n={n}") for n in range(12)]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), "-c", "2", *RESOLVE, "-q")
    process = await start(*args, "--progress", "off")
    try:
        await wait_until(lambda: line_count(output) >= 2, 10, "some records")
        status = await shoal("status", str(output), "--json")
        assert status.code == 0, status.stderr
        data = orjson.loads(status.stdout)
        assert data["ok"] >= 2 and data["pending"] > 0
    finally:
        assert process.stdin is not None
        process.stdin.close()
        done = await finish(process, within_s=20)
    assert done.code == 0, done.stderr  # reading the journal did not disturb the job
    assert line_count(output) == len(urls)


async def test_status_watch_follows_the_job_to_its_end(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url(f"/delay?s=0.1&n={n}") for n in range(24)]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), "-c", "2", *RESOLVE, "-q")
    process = await start(*args, "--progress", "off")
    try:
        await wait_until(lambda: line_count(output) >= 2, 10, "some records")
        watched = await shoal("status", str(output), "--watch", "--json", within_s=30)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        done = await finish(process, within_s=20)
    assert done.code == 0, done.stderr  # the looks did not disturb the job
    assert watched.code == 0, watched.stderr
    looks = watched.records()
    assert len(looks) >= 2  # one a second, while the job ran
    assert looks[0]["running"] is True and looks[0]["pending"] > 0
    assert looks[-1]["ok"] == len(urls) and looks[-1]["pending"] == 0
    assert [look["ok"] for look in looks] == sorted(look["ok"] for look in looks)


async def test_status_watch_of_a_job_nobody_runs_ends_at_once(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url(f"/delay?s=0.05&n={n}", host=f"w{n}.test") for n in range(200)]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    process = await start("fetch", str(source), "-o", str(output), "-c", "4", *RESOLVE)
    await wait_until(lambda: line_count(output) >= 5, 10, "some records")
    process.send_signal(signal.SIGINT)
    stopped = await finish(process, within_s=20)
    assert stopped.code == 130, stopped.stderr
    watched = await shoal("status", str(output), "--watch", within_s=10)
    assert watched.code == 0, watched.stderr
    text = watched.stdout.decode()
    assert text.count("state      not running") == 1 and "pending" in text


async def test_export_jsonl_equals_the_output(server: Misbehaving, tmp_path: Path) -> None:
    output, _ = await finished_job(server, tmp_path)
    done = await shoal("export", str(output))
    assert done.code == 0, done.stderr
    assert done.stdout == output.read_bytes()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("--only", "ok"), 6),
        (("--only", "failed"), 3),
        (("--error", "http_status"), 2),
        (("--error", "http_status", "--error", "unsupported_scheme"), 3),
        (("--status", "5xx"), 1),
        (("--status", "404", "--status", "2XX"), 7),
        (("--only", "failed", "--status", "2xx"), 0),
    ],
)
async def test_export_filters(
    server: Misbehaving, tmp_path: Path, options: tuple[str, ...], expected: int
) -> None:
    output, _ = await finished_job(server, tmp_path)
    target = tmp_path / "subset.jsonl"
    done = await shoal("export", str(output), *options, "-o", str(target))
    assert done.code == 0, done.stderr
    records = read_records(target)
    assert len(records) == expected
    all_records = read_records(output)
    assert all(record in all_records for record in records)


async def test_export_csv(server: Misbehaving, tmp_path: Path) -> None:
    output, _ = await finished_job(server, tmp_path)
    done = await shoal("export", str(output), "--format", "csv")
    assert done.code == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout.decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    records = read_records(output)
    assert [row["url"] for row in rows] == [record["url"] for record in records]
    for row, record in zip(rows, records, strict=True):
        error = record["error"] or {}
        assert row["error_kind"] == (error.get("kind") or "")
        assert row["error_message"] == (error.get("message") or "")
        assert row["status"] == ("" if record["status"] is None else str(record["status"]))
        assert row["sha256"] == (record["sha256"] or "")
        assert row["attempts"] == str(record["attempts"])


@pytest.mark.parametrize(
    ("options", "option"),
    [(("--error", "nope"), "--error"), (("--status", "7xx"), "--status")],
)
async def test_export_bad_filters_are_usage_errors(
    server: Misbehaving, tmp_path: Path, options: tuple[str, ...], option: str
) -> None:
    output, _ = await finished_job(server, tmp_path)
    done = await shoal("export", str(output), *options)
    assert done.code == 2
    assert option in done.stderr


@pytest.mark.parametrize("command", ["status", "export"])
async def test_missing_or_foreign_journal_is_a_usage_error(tmp_path: Path, command: str) -> None:
    done = await shoal(command, str(tmp_path / "absent.journal"))
    assert done.code == 2
    assert "not a journal file" in done.stderr
    junk = tmp_path / "junk.journal"
    junk.write_bytes(b"not a database at all" * 100)
    done = await shoal(command, str(junk))
    assert done.code == 2
    assert "not a usable shoal journal" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_map_job_reads_back_like_a_fetch(tmp_path: Path) -> None:
    journal = tmp_path / "map.db"

    async def square(n: int) -> int:
        if n % 4 == 0:
            raise ValueError("a multiple of four")
        return n * n

    def run() -> list[shoal_library.Outcome]:
        return list(
            shoal_library.map(square, range(20), group=lambda n: f"g{n % 2}", journal=str(journal))
        )

    assert len(await asyncio.to_thread(run)) == 20
    done = await shoal("status", str(journal), "--json")
    data = orjson.loads(done.stdout)
    assert (data["admitted"], data["ok"], data["failed"], data["pending"]) == (20, 15, 5, 0)
    assert data["by_error"] == {"task": 5}
    done = await shoal("export", str(journal), "--format", "csv")
    rows = list(csv.reader(io.StringIO(done.stdout.decode())))
    assert tuple(rows[0]) == MAP_CSV_COLUMNS and len(rows) == 21
    by_key = {row[0]: dict(zip(MAP_CSV_COLUMNS, row, strict=True)) for row in rows[1:]}
    assert by_key["3"]["value"] == "9" and by_key["3"]["group"] == "g1"
    assert by_key["4"]["error_kind"] == "task" and by_key["4"]["value"] == ""
    assert by_key["4"]["error_message"] == "ValueError: a multiple of four"
    done = await shoal("export", str(journal), "--error", "task")
    assert sorted(record["key"] for record in done.records()) == ["0", "12", "16", "4", "8"]
    report = tmp_path / "report.html"
    done = await shoal("report", str(journal), "-o", str(report))
    assert done.code == 0, done.stderr
    page = report.read_text()
    assert "<h2>Top groups</h2>" in page and "2 groups in all" in page
    assert "first key" in page and "ValueError: a multiple of four" in page


@pytest.mark.parametrize("form", ["jsonl", "csv"])
async def test_export_into_a_closed_pipe_ends_quietly_with_the_sigpipe_status(
    server: Misbehaving, tmp_path: Path, form: str
) -> None:
    """``shoal export JOB | head -1``: exit 141 as ``shoal fetch`` does, and nothing said."""
    (tmp_path / "in.txt").write_bytes(lines(*ok_urls(server, 3000)))  # far more than a pipe holds
    done = await shoal("fetch", "in.txt", "-o", "out.jsonl", *RESOLVE, "-q", cwd=tmp_path)
    assert done.code == 0, done.stderr
    code, line, err = await closed_after_one_line(
        "export", "out.jsonl", "--format", form, cwd=tmp_path
    )
    assert line.startswith(b'{"url":' if form == "jsonl" else b"url,id,method")
    assert code == EXIT_PIPE, err
    assert err == ""  # no traceback, no "Exception ignored"


async def test_export_of_a_shared_job_into_a_closed_pipe_ends_the_same_way(
    server: Misbehaving, tmp_path: Path, pg_dsn: str
) -> None:
    (tmp_path / "in.txt").write_bytes(lines(*ok_urls(server, 3000)))
    shared = ("--store", pg_dsn, "--job", "piped")
    done = await shoal("fetch", "in.txt", *shared, *RESOLVE, "-q", cwd=tmp_path, within_s=60)
    assert done.code == 0, done.stderr
    code, line, err = await closed_after_one_line("export", *shared, cwd=tmp_path)
    assert line.startswith(b'{"url":')
    assert code == EXIT_PIPE, err
    assert err == ""
