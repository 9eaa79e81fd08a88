"""``--retry-failed [KINDS]``: a finished job's failures sent again, each request ending
with exactly one record (the new one), the rest untouched; and a crawl given a larger
``--max-depth`` goes on from the pages at its old depth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.command import RESOLVE, lines, shoal
from tests.helpers import read_records
from tests.servers import Misbehaving


def write_job(server: Misbehaving, listing: Path) -> tuple[list[str], list[str], str]:
    """Ten good URLs, five that fail once with 503 then succeed, one refused port."""
    good = [server.url(f"/flaky/ok{n}?fail=0") for n in range(10)]
    flaky = [server.url(f"/flaky/once{n}?fail=1") for n in range(5)]
    refused = "http://127.0.0.1:1/refused"
    listing.write_bytes(lines(*good, *flaky, refused))
    return good, flaky, refused


def by_url(out: Path) -> dict[str, dict[str, object]]:
    records = read_records(out)
    counts = Counter(record["url"] for record in records)
    assert set(counts.values()) == {1}, counts  # one record per request, always
    return {record["url"]: record for record in records}


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_retry_failed_sends_the_failures_again_once(
    server: Misbehaving, tmp_path: Path, processes: str
) -> None:
    listing, out = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    good, flaky, refused = write_job(server, listing)
    args = ("fetch", str(listing), "-o", str(out), *RESOLVE, "--retries", "0", "--fail",
            "--progress", "off", "-p", processes)  # fmt: skip
    first = await shoal(*args, within_s=40)
    assert first.code == 1, first.stderr
    records = by_url(out)
    assert [records[url]["status"] for url in flaky] == [503] * 5
    again = await shoal(*args, "--retry-failed", "5xx", within_s=40)
    assert again.code == 1, again.stderr  # the refused port still fails: not asked for
    assert "--retry-failed: 5 chosen requests are sent again" in again.stderr
    assert "5 this run: 5 ok, 0 failed" in again.stderr
    records = by_url(out)
    assert len(records) == 16
    assert all(records[url]["status"] == 200 and records[url]["error"] is None for url in flaky)
    assert records[refused]["error"]["kind"] == "connect"  # type: ignore[index]
    # The rest untouched: sent once, over both runs.
    assert all(server.log.paths[f"/flaky/ok{n}"] == 1 for n in range(len(good)))
    status = await shoal("status", str(out), "--json")
    assert b'"ok":15,"failed":1,"pending":0' in status.stdout
    every = await shoal(*args, "--retry-failed", within_s=40)  # every failure: the one left
    assert "1 failed requests are sent again" in every.stderr
    assert "1 this run: 0 ok, 1 failed" in every.stderr
    assert len(by_url(out)) == 16
    assert all(server.log.paths[f"/flaky/once{n}"] == 2 for n in range(5))


async def test_retry_failed_is_refused_where_it_cannot_be(
    server: Misbehaving, tmp_path: Path
) -> None:
    listing = tmp_path / "urls.txt"
    write_job(server, listing)
    base = ("fetch", str(listing), *RESOLVE, "--progress", "off")
    for extra, message in [
        (("--retry-failed",), "needs the job's journal"),  # stdout: a temporary journal
        (("-o", str(tmp_path / "o.jsonl"), "--retry-failed", "--restart"), "--restart"),
        (("-o", str(tmp_path / "o.jsonl"), "--retry-failed", "gone"), "'gone' is not an"),
    ]:
        done = await shoal(*base, *extra)
        assert done.code == 2, (extra, done.stderr)
        assert "'--retry-failed'" in done.stderr and message in done.stderr
    assert server.log.total == 0
