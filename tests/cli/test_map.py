"""``shoal map``: an async function from a module over a JSON-lines file, as a job."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.command import shoal
from tests.helpers import read_records

#: The module the jobs map: each call appends ``n group in_group`` to ``calls.log``.
MODULE = """
import asyncio
import os
from collections import Counter

running = Counter()


def log(line):
    fd = os.open("calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


async def square(item):
    group = item.get("host", "-")
    running[group] += 1
    try:
        log(f"{item['n']} {group} {running[group]}")
        await asyncio.sleep(0.002)
        if item["n"] % 10 == 0:
            raise ValueError("a ten")
        if item["n"] % 7 == 0:
            raise ConnectionError("a seven")
        if item.get("slow"):
            await asyncio.sleep(5)
        return item["n"] ** 2
    finally:
        running[group] -= 1


def not_async(item):
    return item


def host_of(item):
    return item["host"].upper()
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "jobs.py").write_text(textwrap.dedent(MODULE))
    lines = [orjson.dumps({"n": n, "host": f"h{n % 3}"}) for n in range(90)]
    lines += [b"", b"{not json", orjson.dumps({"n": 5, "host": "again"})]
    (tmp_path / "items.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return tmp_path


def calls(folder: Path) -> list[tuple[int, str, int]]:
    rows = (line.split() for line in (folder / "calls.log").read_text().splitlines())
    return [(int(n), group, int(running)) for n, group, running in rows]


async def test_map_calls_the_function_once_per_item_and_records_each(folder: Path) -> None:
    done = await shoal(
        "map", "jobs:square", "items.jsonl", "-o", "out.jsonl", "--key", "n",
        "--group", "host", "--per-group", "2", "--retry-on", "ConnectionError",
        "--backoff", "0.001", "--backoff-max", "0.002", cwd=folder,
    )  # fmt: skip
    assert done.code == 1, done.stderr  # some items failed
    records = read_records(folder / "out.jsonl")
    assert len(records) == 91  # 90 keys (n=5 twice: kept once) and the malformed line
    by_key = {record["key"]: record for record in records if record["key"] is not None}
    assert by_key["3"]["value"] == 9 and by_key["3"]["group"] == "h0"
    assert by_key["3"]["item"] == {"n": 3, "host": "h0"} and by_key["3"]["attempts"] == 1
    assert by_key["10"]["error"] == {"kind": "task", "message": "ValueError: a ten"}
    assert by_key["10"]["attempts"] == 1
    assert by_key["7"]["error"] == {"kind": "task", "message": "ConnectionError: a seven"}
    assert by_key["7"]["attempts"] == 3  # --retries 2 by default
    [bad] = [r for r in records if r["error"] and r["error"]["kind"] == "invalid_item"]
    assert bad["line"] == 92 and bad["error"]["message"].startswith("item 92: malformed JSON")
    per_key = Counter(n for n, _, _ in calls(folder))
    assert per_key[3] == 1 and per_key[10] == 1 and per_key[7] == 3
    assert max(running for _, _, running in calls(folder)) <= 2  # --per-group, measured inside
    assert "items       91 this run: 70 ok, 21 failed; 22 retries" in done.stderr
    assert "throughput" in done.stderr and "items/s" in done.stderr
    # The same command again: the job is complete, nothing is called again.
    again = await shoal("map", "jobs:square", "items.jsonl", "-o", "out.jsonl", cwd=folder)
    assert again.code == 1 and "91 already final" in again.stderr
    assert len(calls(folder)) == sum(per_key.values())


async def test_status_of_a_map_counts_items(folder: Path) -> None:
    done = await shoal("map", "jobs:square", "items.jsonl", "-o", "out.jsonl", "-q", cwd=folder)
    assert done.code == 1, done.stderr
    status = await shoal("status", "out.jsonl", cwd=folder)
    assert status.code == 0, status.stderr
    text = status.stdout.decode()
    assert "items      92 admitted: 71 ok, 21 failed, 0 pending" in text
    assert "requests" not in text


async def test_a_call_past_the_timeout_fails_as_a_timeout(folder: Path) -> None:
    (folder / "slow.jsonl").write_bytes(orjson.dumps({"n": 1, "slow": True}) + b"\n")
    done = await shoal(
        "map", "jobs:square", "slow.jsonl", "--timeout", "0.05", "--retries", "1",
        "--backoff", "0.001", "-q", cwd=folder,
    )  # fmt: skip
    [record] = done.records()
    assert record["error"] == {"kind": "timeout", "message": "call took longer than 0.05 s"}
    assert record["attempts"] == 2


async def test_processes_split_the_items_and_the_group_caps(folder: Path) -> None:
    done = await shoal(
        "map", "jobs:square", "items.jsonl", "-o", "out.jsonl", "--key", "n",
        "--group", "jobs:host_of", "--per-group", "2", "-c", "8", "--processes", "2",
        "--retries", "0", "-q", cwd=folder,
    )  # fmt: skip
    assert done.code == 1, done.stderr
    records = read_records(folder / "out.jsonl")
    mapped = [record for record in records if record["group"] is not None]
    assert sorted(record["key"] for record in mapped) == sorted(str(n) for n in range(90))
    assert {record["group"] for record in mapped} == {"H0", "H1", "H2"}
    assert len(records) == 91  # and the malformed line's error record
    assert Counter(n for n, _, _ in calls(folder)) == Counter(range(90))
    # Each process holds its part of a group's cap of 2 (one each), measured inside.
    assert max(running for _, _, running in calls(folder)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nowhere:square",), "cannot import 'nowhere'"),
        (("jobs",), "'jobs' is not MODULE:NAME"),
        (("jobs:missing",), "'jobs' has no 'missing'"),
        (("jobs:not_async",), "'jobs:not_async' is not an async function"),
        (("jobs:square", "--retry-on", "NoSuchError"), "'NoSuchError' is not an exception"),
        (("jobs:square", "--group", "jobs:absent"), "'jobs' has no 'absent'"),
        (("jobs:square", "--per-group", "0"), "--per-group"),
        (("jobs:square", "--timeout", "0"), "--timeout"),
        # A field the items lack fails on the first item, not on every one in the journal.
        (
            ("jobs:square", "--key", "nam"),
            "Invalid value for '--key': the first item of items.jsonl has no field 'nam'"
            " (its fields: 'n', 'host')",
        ),
        (("jobs:square", "--key", "n", "--group", "hots"), "'--group': the first item"),
        (("jobs:square", "--group", "jobs:not_async"), "jobs:not_async gives dict"),
        (("jobs:square", "--key", "jobs:square"), "jobs:square gives coroutine"),
    ],
)
async def test_bad_arguments_are_usage_errors(
    folder: Path, args: tuple[str, ...], message: str
) -> None:
    function, *options = args
    done = await shoal("map", function, "items.jsonl", "-o", "out.jsonl", *options, cwd=folder)
    assert done.code == 2, done.stderr
    assert message in done.stderr
    assert not (folder / "calls.log").exists()
    assert not (folder / "out.jsonl.journal").exists()
