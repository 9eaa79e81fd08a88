"""``shoal status``, ``export`` and ``report`` of a job run by ``--processes N``: the whole
job, whichever path they are given (the output, the journal, or one part's journal)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.command import RESOLVE, lines, shoal
from tests.helpers import read_records
from tests.servers import Misbehaving

HOSTS = 4


@pytest.fixture
async def job(server: Misbehaving, tmp_path: Path) -> Path:
    """A finished job of two processes: 40 requests over four hosts, 8 of them 503s."""
    urls = [
        server.url(f"/status/{503 if n % 5 == 0 else 200}?n={n}", host=f"q{n % HOSTS}.test")
        for n in range(40)
    ]
    (tmp_path / "small.txt").write_bytes(lines(*urls))
    output = tmp_path / "mp.jsonl"
    done = await shoal(
        "fetch", str(tmp_path / "small.txt"), "-o", str(output), *RESOLVE, "-p", "2",
        "--retries", "0", "--fail", "--progress", "off", "-q", within_s=60,
    )  # fmt: skip
    assert done.code == 1, done.stderr  # some failed
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith("-of-2")) == [
        "mp.jsonl.journal.1-of-2",
        "mp.jsonl.journal.2-of-2",
    ]
    return output


def named(output: Path) -> list[str]:
    return [str(output), f"{output}.journal", f"{output}.journal.2-of-2"]


async def test_status_shows_the_whole_job_from_any_path(job: Path) -> None:
    for path in named(job):
        done = await shoal("status", path, "--json")
        assert done.code == 0, done.stderr
        status = orjson.loads(done.stdout)
        assert (status["admitted"], status["ok"], status["failed"]) == (40, 32, 8)
        assert status["input_done"] and status["pending"] == 0
        assert status["by_status"] == {"2xx": 32, "5xx": 8}
        text = await shoal("status", path)
        assert "40 admitted: 32 ok, 8 failed, 0 pending" in text.stdout.decode()
        assert "2 parts" in text.stdout.decode()


async def test_export_writes_every_part_as_the_output_holds_them(job: Path) -> None:
    written = b"".join(orjson.dumps(record) + b"\n" for record in read_records(job))
    for path in named(job):
        done = await shoal("export", path)
        assert done.code == 0, done.stderr
        assert done.stdout == written  # the parts in order, as joined into the output
    failed = await shoal("export", str(job), "--only", "failed", "--format", "csv")
    assert failed.code == 0, failed.stderr
    rows = failed.stdout.decode().splitlines()
    assert len(rows) == 1 + 8 and rows[0].startswith("url,")
    assert all(",503," in row for row in rows[1:])


async def test_report_counts_the_whole_job(job: Path, tmp_path: Path) -> None:
    for path in named(job):
        page = tmp_path / "page.html"
        done = await shoal("report", path, "-o", str(page))
        assert done.code == 0, done.stderr
        text = page.read_text()
        assert "mp.jsonl.journal (2 parts" in text
        assert "<td>40 admitted</td>" in text
        hosts = Counter(r["url"].split("//")[1].split(":")[0] for r in read_records(job))
        for host, count in hosts.items():  # every host with its requests over both parts
            assert f'>{host}</td><td class="n">{count}</td>' in text
    default = await shoal("report", str(job))
    assert default.code == 0, default.stderr
    assert (tmp_path / "mp.jsonl.report.html").exists()


async def test_a_missing_part_is_named(job: Path) -> None:
    os.remove(f"{job}.journal.1-of-2")
    done = await shoal("status", str(job))
    assert done.code == 2
    assert "mp.jsonl.journal.1-of-2 are missing" in done.stderr
