"""Reading a job back through the one async reader, whatever keeps it (here: a journal,
and the parts of a ``--processes`` job; a shared store's is tried in tests/cli)."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson

from shoal.result import Result
from shoal.sources.items import entry_for
from shoal.sources.source import Position
from shoal.store import SinkMark, SQLiteStore
from shoal.store.parts import part_journal
from shoal.store.reader import JobAddress, open_reader
from shoal.store.snapshot import ReportSnapshot, SharedSource
from shoal.store.sqlite.reader import JournalReader

#: More than one batch of records handed from the reader's thread to the loop.
RECORDS = 2100


async def _journal(path: Path, urls: list[str]) -> None:
    store = SQLiteStore(str(path))
    try:
        await store.open("input.txt")
        jobs = await store.admit(
            [entry_for(url, n) for n, url in enumerate(urls, 1)], Position(len(urls))
        )
        done = [
            (job, Result(url=job.request.url, line=job.line, status=200, attempts=1, bytes=3))
            for job in jobs
        ]
        await store.complete(done, SinkMark())
        await store.finish_input()
    finally:
        await store.close()


async def test_a_journal_reads_back_its_records_in_order_off_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.journal"
    await _journal(path, [f"http://a.test/{n}" for n in range(RECORDS)])
    with JournalReader(str(path)) as direct:
        expected = list(direct.records())
    async with open_reader(JobAddress(journals=(str(path),))) as reader:
        loop = threading.current_thread()
        read = [record async for record in reader.records()]
        status = await reader.status()
        summary = await reader.summary()
        assert threading.current_thread() is loop
    assert read == expected
    assert len(read) == RECORDS
    assert orjson.loads(read[-1])["url"] == f"http://a.test/{RECORDS - 1}"
    assert (status.summary, status.running, status.workers) == (summary, False, None)
    assert (summary.admitted, summary.ok, summary.pending) == (RECORDS, RECORDS, 0)


async def test_a_reader_stopped_early_lets_its_journal_go(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.journal"
    await _journal(path, [f"http://a.test/{n}" for n in range(RECORDS)])
    async with open_reader(JobAddress(journals=(str(path),))) as reader:
        records = reader.records()
        first = await anext(records)
        await records.aclose()
    assert orjson.loads(first)["url"] == "http://a.test/0"


async def test_the_parts_of_a_job_read_as_one_with_a_report_read_ahead(tmp_path: Path) -> None:
    base = str(tmp_path / "out.jsonl.journal")
    parts = [part_journal(base, index, 2) for index in range(2)]
    await _journal(Path(parts[0]), ["http://a.test/1", "http://b.test/1"])
    await _journal(Path(parts[1]), ["http://a.test/2"])
    async with open_reader(JobAddress(journals=tuple(parts))) as reader:
        assert reader.title == reader.key == f"{base} (2 parts, one per process)"
        read = [orjson.loads(record)["url"] async for record in reader.records()]
        snapshot = await reader.report_source(hosts=1, errors=1, interval=lambda span: 60)
    assert read == ["http://a.test/1", "http://b.test/1", "http://a.test/2"]
    assert isinstance(snapshot, ReportSnapshot)
    assert not isinstance(snapshot, SharedSource)  # (a journal's job has no workers)
    assert snapshot.summary().ok == 3
    top = snapshot.hosts(1)
    assert (top.rows[0].host, top.rows[0].requests, top.groups) == ("a.test", 2, 2)
