"""A finished job whose input has grown since reads what was added, once: a file that
grew at its end (also with --processes), a last line completed after it was read, and
stdin, which cannot be checked, says what it made of the lines it was given."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.command import RESOLVE, lines, shoal
from tests.helpers import read_records
from tests.servers import Misbehaving


def numbered(server: Misbehaving, first: int, last: int) -> list[str]:
    """URLs with a path each (the server counts hits by path)."""
    return [server.url(f"/flaky/g{n}?fail=0") for n in range(first, last + 1)]


def fetch_args(listing: Path, out: Path, *extra: str) -> tuple[str, ...]:
    return ("fetch", str(listing), "-o", str(out), *RESOLVE, "--progress", "off", *extra)


async def test_lines_added_to_a_finished_job_are_fetched_once(
    server: Misbehaving, tmp_path: Path
) -> None:
    listing, out = tmp_path / "grow.txt", tmp_path / "grow.jsonl"
    listing.write_bytes(lines(*numbered(server, 1, 300)))
    first = await shoal(*fetch_args(listing, out))
    assert first.code == 0, first.stderr
    with listing.open("ab") as file:
        file.write(lines(*numbered(server, 301, 400)))
    grown = await shoal(*fetch_args(listing, out))
    assert grown.code == 0, grown.stderr
    assert "100 this run: 100 ok" in grown.stderr
    assert "300 already final" in grown.stderr
    records = read_records(out)
    assert Counter(record["url"] for record in records) == Counter(numbered(server, 1, 400))
    assert sorted(record["line"] for record in records) == list(range(1, 401))
    assert set(server.log.paths.values()) == {1}  # each URL sent once, over both runs
    assert len(server.log.paths) == 400
    again = await shoal(*fetch_args(listing, out))  # nothing more: nothing to do
    assert again.code == 0 and "0 this run" in again.stderr
    assert len(read_records(out)) == 400


async def test_a_grown_input_with_processes(server: Misbehaving, tmp_path: Path) -> None:
    listing, out = tmp_path / "grow.txt", tmp_path / "grow.jsonl"
    listing.write_bytes(lines(*numbered(server, 1, 40)))
    first = await shoal(*fetch_args(listing, out, "-p", "2"), within_s=40)
    assert first.code == 0, first.stderr
    with listing.open("ab") as file:
        file.write(lines(*numbered(server, 41, 60)))
    grown = await shoal(*fetch_args(listing, out, "-p", "2"), within_s=40)
    assert grown.code == 0, grown.stderr
    assert "20 this run: 20 ok" in grown.stderr
    records = read_records(out)
    assert Counter(record["url"] for record in records) == Counter(numbered(server, 1, 60))
    assert set(server.log.paths.values()) == {1} and len(server.log.paths) == 60


async def test_a_torn_last_line_completed_later(server: Misbehaving, tmp_path: Path) -> None:
    listing, out = tmp_path / "torn.txt", tmp_path / "torn.jsonl"
    one, fragment = server.url("/ok?t=1"), server.url("/ok?t=2")
    listing.write_bytes(f"{one}\n{fragment}".encode())  # no newline after the last line
    assert (await shoal(*fetch_args(listing, out, "-q"))).code == 0
    with listing.open("ab") as file:  # the writer had not finished the line
        file.write(b"5\n" + lines(server.url("/ok?t=3")))
    grown = await shoal(*fetch_args(listing, out))
    assert grown.code == 0, grown.stderr
    by_url = {record["url"]: record["line"] for record in read_records(out)}
    # The fragment keeps its record; the line as the file now has it is read whole.
    assert by_url == {one: 1, fragment: 2, fragment + "5": 2, server.url("/ok?t=3"): 3}
    assert server.log.total == 4


async def test_a_torn_last_line_given_its_newline(server: Misbehaving, tmp_path: Path) -> None:
    listing, out = tmp_path / "torn.txt", tmp_path / "torn.jsonl"
    last = server.url("/flaky/n1?fail=0")
    listing.write_bytes(last.encode())
    assert (await shoal(*fetch_args(listing, out, "-q"))).code == 0
    with listing.open("ab") as file:
        file.write(b"\n" + lines(server.url("/flaky/n2?fail=0")))
    grown = await shoal(*fetch_args(listing, out))
    assert grown.code == 0, grown.stderr
    assert "1 this run" in grown.stderr and "duplicate" not in grown.stderr
    by_url = {record["url"]: record["line"] for record in read_records(out)}
    assert by_url == {last: 1, server.url("/flaky/n2?fail=0"): 2}
    assert server.log.paths["/flaky/n1"] == 1


async def test_a_resumed_stdin_says_what_it_read_even_with_quiet(
    server: Misbehaving, tmp_path: Path
) -> None:
    out = tmp_path / "stdin.jsonl"
    args = ("fetch", "-", "-o", str(out), *RESOLVE, "--progress", "off", "-q")
    first = await shoal(*args, stdin=lines(*numbered(server, 1, 3)))
    assert first.code == 0 and first.stderr == ""
    more = await shoal(*args, stdin=lines(*numbered(server, 1, 5)))
    assert more.code == 0, more.stderr
    assert "the first 3 lines of stdin were read by earlier runs and skipped" in more.stderr
    assert "2 new lines read" in more.stderr
    assert len(read_records(out)) == 5
    other = await shoal(*args, stdin=lines(server.url("/flaky/other?fail=0")))
    assert other.code == 0
    assert "stdin held 1 lines, less than the 5 lines this job had read" in other.stderr
    assert "--restart" in other.stderr
    assert len(read_records(out)) == 5 and server.log.paths["/flaky/other"] == 0
