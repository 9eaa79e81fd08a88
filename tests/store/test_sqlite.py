"""The SQLite journal on real files, and the in-memory store."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import orjson
import pytest

from shoal.errors import JournalError
from shoal.job import Entry, Job
from shoal.request import Request
from shoal.result import Error, ErrorKind, Result
from shoal.sources.items import ItemKeys, entry_for
from shoal.sources.source import Position
from shoal.store import (
    JobCounts,
    JobState,
    Journal,
    MemoryStore,
    Retrying,
    SinkMark,
    SQLiteStore,
    record_of,
)

INPUT = "/data/input.txt"
Opener = Callable[..., Awaitable[SQLiteStore]]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Opener]:
    """Open journals (``journal.db`` in tmp_path by default), closed at the end of the test."""
    opened: list[SQLiteStore] = []

    async def opener(path: Path | None = None, input_name: str = INPUT) -> SQLiteStore:
        store = SQLiteStore(str(path or tmp_path / "journal.db"))
        opened.append(store)
        await store.open(input_name)
        return store

    try:
        yield opener
    finally:
        for store in opened:
            # A test may have closed it already; a second close finds the executor shut down.
            with contextlib.suppress(RuntimeError):
                await store.close()


async def reopened_state(tmp_path: Path, input_name: str = INPUT) -> JobState:
    """The state a fresh open of the default journal reports."""
    store = SQLiteStore(str(tmp_path / "journal.db"))
    try:
        return await store.open(input_name)
    finally:
        await store.close()


def entries(*items: object, start: int = 1) -> list[Entry]:
    return [entry_for(item, position) for position, item in enumerate(items, start)]


def ok_result(job: Job, status: int = 200) -> Result:
    return Result(url=job.request.url, line=job.line, status=status, attempts=1, bytes=2)


def failed_result(job: Job) -> Result:
    return Result(
        url=job.request.url, line=job.line, error=Error(ErrorKind.TIMEOUT, "slow"), attempts=3
    )


# -- opening ----------------------------------------------------------------------------------


async def test_new_journal_state(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "journal.db"))
    try:
        state = await store.open(INPUT)
    finally:
        await store.close()
    assert state.resumed is False
    assert state.input_done is False
    assert state.position == Position()
    assert state.mark == SinkMark()
    assert state.counts == JobCounts()
    assert (tmp_path / "journal.db").exists()


async def test_reopen_is_resumed_with_position_and_counts(
    tmp_path: Path, open_store: Opener
) -> None:
    store = await open_store()
    jobs = await store.admit(entries("http://a.test/1", "http://a.test/2"), Position(2, 40))
    await store.complete([(jobs[0], ok_result(jobs[0]))], SinkMark())
    await store.close()

    state = await reopened_state(tmp_path)
    assert state.resumed is True
    assert state.input_done is False
    assert state.position == Position(2, 40)
    assert state.counts == JobCounts(admitted=2, ok=1, failed=0)
    assert state.counts.pending == 1


async def test_finish_input_is_remembered(tmp_path: Path, open_store: Opener) -> None:
    store = await open_store()
    await store.admit(entries("http://a.test/"), Position(1, 15))
    await store.finish_input()
    await store.close()
    state = await reopened_state(tmp_path)
    assert state.input_done is True


async def test_open_with_another_input_raises(tmp_path: Path, open_store: Opener) -> None:
    store = await open_store()
    await store.close()
    other = SQLiteStore(str(tmp_path / "journal.db"))
    try:
        with pytest.raises(JournalError, match="another input"):
            await other.open("/data/other.txt")
    finally:
        await other.close()


async def test_open_a_journal_of_another_schema_version_raises(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('version', 99), ('input', ?)", (INPUT,))
    db.close()
    store = SQLiteStore(str(path))
    try:
        with pytest.raises(JournalError, match="another version"):
            await store.open(INPUT)
    finally:
        await store.close()


async def test_a_file_that_is_not_sqlite_raises(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is certainly not a database\n" * 200)
    store = SQLiteStore(str(path))
    try:
        with pytest.raises(JournalError, match="not a usable shoal journal"):
            await store.open(INPUT)
    finally:
        await store.close()
    # The file is left as it was.
    assert path.read_bytes() == b"this is certainly not a database\n" * 200


async def test_a_directory_raises(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path))
    try:
        with pytest.raises(JournalError):
            await store.open(INPUT)
    finally:
        await store.close()


async def test_use_before_open_raises(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "journal.db"))
    try:
        with pytest.raises(JournalError, match="not open"):
            await store.pending(0, 10)
    finally:
        await store.close()


# -- admit ------------------------------------------------------------------------------------


async def test_admit_returns_jobs_in_order(open_store: Opener) -> None:
    store = await open_store()
    jobs = await store.admit(entries("http://a.test/1", "http://b.test/2"), Position(2, 32))
    assert [job.seq for job in jobs] == [1, 2]
    assert [job.request.url for job in jobs] == ["http://a.test/1", "http://b.test/2"]
    assert [job.host for job in jobs] == ["a.test", "b.test"]
    assert [job.line for job in jobs] == [1, 2]
    assert store.counts.admitted == 2


async def test_admit_dedups_within_a_batch(open_store: Opener) -> None:
    store = await open_store()
    batch = entries("http://a.test/x", "HTTP://A.TEST/x#f", "http://a.test/y", "http://a.test/x")
    jobs = await store.admit(batch, Position(4))
    assert [job.request.url for job in jobs] == ["http://a.test/x", "http://a.test/y"]
    assert [job.line for job in jobs] == [1, 3]  # the first occurrence wins
    assert store.counts.admitted == 2


async def test_admit_dedups_across_batches(open_store: Opener) -> None:
    store = await open_store()
    first = await store.admit(entries("http://a.test/1", "http://a.test/2"), Position(2))
    second = await store.admit(
        entries("http://a.test/2", "http://a.test/3", "http://a.test/1", start=3), Position(5)
    )
    assert [job.seq for job in first] == [1, 2]
    assert [(job.seq, job.request.url, job.line) for job in second] == [(3, "http://a.test/3", 4)]
    assert store.counts.admitted == 3
    assert await store.admit(entries("http://a.test/3", start=6), Position(6)) == []


async def test_admit_dedups_across_reopen(open_store: Opener) -> None:
    store = await open_store()
    await store.admit(entries("http://a.test/1", "http://a.test/2"), Position(2))
    await store.close()
    again = await open_store()
    jobs = await again.admit(entries("http://a.test/2", "http://a.test/3", start=3), Position(4))
    assert [(job.seq, job.request.url) for job in jobs] == [(3, "http://a.test/3")]
    assert again.counts.admitted == 3


async def test_admit_keeps_every_invalid_entry(open_store: Opener) -> None:
    store = await open_store()
    batch = entries("ftp://a.test/", "ftp://a.test/", 42)
    jobs = await store.admit(batch, Position(3))
    assert len(jobs) == 3  # invalid entries are keyed by position, never deduplicated
    assert all(job.error is not None and job.target is None for job in jobs)
    assert jobs[0].error is not None and jobs[0].error.kind is ErrorKind.UNSUPPORTED_SCHEME


async def test_admit_of_an_empty_batch_still_saves_the_position(
    tmp_path: Path, open_store: Opener
) -> None:
    store = await open_store()
    assert await store.admit([], Position(10, 500)) == []
    await store.close()
    state = await reopened_state(tmp_path)
    assert state.position == Position(10, 500)


async def test_admit_of_an_item_with_a_lone_surrogate_does_not_crash(open_store: Opener) -> None:
    store = await open_store()
    jobs = await store.admit(entries("http://a.test/\udc80"), Position(1))
    assert len(jobs) == 1


# -- complete and records ---------------------------------------------------------------------


async def test_complete_commits_records_in_done_order(open_store: Opener) -> None:
    store = await open_store()
    jobs = await store.admit(entries(*(f"http://a.test/{n}" for n in range(1, 5))), Position(4))
    done = [(jobs[2], ok_result(jobs[2])), (jobs[0], failed_result(jobs[0]))]
    records = (await store.complete(done, SinkMark())).records
    assert [seq for seq, _ in records] == [1, 2]
    decoded = [orjson.loads(record) for _, record in records]
    assert [record["url"] for record in decoded] == ["http://a.test/3", "http://a.test/1"]
    assert decoded[0]["status"] == 200 and decoded[0]["error"] is None
    assert decoded[1]["error"] == {"kind": "timeout", "message": "slow"}
    assert decoded[1]["attempts"] == 3
    more = (await store.complete([(jobs[1], ok_result(jobs[1], 404))], SinkMark())).records
    assert [seq for seq, _ in more] == [3]
    assert store.counts == JobCounts(admitted=4, ok=2, failed=1)
    assert store.counts.pending == 1


async def test_records_after(open_store: Opener) -> None:
    store = await open_store()
    jobs = await store.admit(entries(*(f"http://a.test/{n}" for n in range(1, 6))), Position(5))
    committed = (await store.complete([(job, ok_result(job)) for job in jobs], SinkMark())).records
    assert await store.records_after(0, 100) == committed
    assert await store.records_after(2, 2) == committed[2:4]
    assert await store.records_after(5, 10) == []
    assert all(isinstance(record, bytes) for _, record in await store.records_after(0, 10))


async def test_records_and_done_seq_survive_reopen(open_store: Opener) -> None:
    store = await open_store()
    jobs = await store.admit(entries("http://a.test/1", "http://a.test/2"), Position(2))
    first = (await store.complete([(jobs[1], ok_result(jobs[1]))], SinkMark())).records
    await store.close()
    again = await open_store()
    assert await again.records_after(0, 10) == first
    pending = await again.pending(0, 10)
    second = (await again.complete([(pending[0], ok_result(pending[0]))], SinkMark())).records
    assert [seq for seq, _ in second] == [2]  # numbering continues after the reopen
    assert again.counts == JobCounts(admitted=2, ok=2, failed=0)


async def test_pending_returns_unfinished_jobs_after_reopen(open_store: Opener) -> None:
    store = await open_store()
    jobs = await store.admit(
        [
            *entries("http://a.test/1"),
            entry_for(
                Request(
                    "http://b.test/2",
                    method="POST",
                    headers={"X": "1"},
                    body=b"\x00b",
                    id="two",
                    meta={"m": [1]},
                ),
                2,
            ),
            *entries("http://a.test/3", "ftp://a.test/4", start=3),
        ],
        Position(4),
    )
    jobs[0].attempts = 1
    await store.complete([(jobs[0], ok_result(jobs[0]))], SinkMark())
    await store.close()

    again = await open_store()
    pending = await again.pending(0, 100)
    assert [job.seq for job in pending] == [2, 3, 4]
    post = pending[0]
    assert post.request == Request(
        "http://b.test/2",
        method="POST",
        headers={"X": "1"},
        body=b"\x00b",
        id="two",
        meta={"m": [1]},
    )
    assert post.host == "b.test"
    assert post.line == 2
    assert post.error is None and post.target is not None
    invalid = pending[2]
    assert invalid.request.url == "ftp://a.test/4"
    assert invalid.target is None
    assert invalid.error is not None
    assert invalid.error.kind is ErrorKind.UNSUPPORTED_SCHEME
    assert invalid.error.message.startswith("line 4: ")
    # Paging by seq.
    assert [job.seq for job in await again.pending(2, 1)] == [3]
    assert await again.pending(4, 10) == []


async def test_a_retry_keeps_the_attempts_it_was_decided_with(open_store: Opener) -> None:
    store = await open_store()
    [job] = await store.admit(entries("http://a.test/1"), Position(1))
    job.attempts = 2  # the next attempt is under way when the batch commits
    await store.complete([(job, Retrying(1))], SinkMark())
    await store.close()
    [again] = await (await open_store()).pending(0, 10)
    assert again.attempts == 1  # an attempt a kill cuts short is not counted


async def test_mapped_items_come_back_with_their_keys_groups_and_errors(
    open_store: Opener,
) -> None:
    store = await open_store(input_name="<map m.f>")
    keys = ItemKeys(key=lambda item: item["id"], group=lambda item: item["g"])
    items = [{"id": 7, "g": "one", "v": [1, "x"]}, {"id": 8, "g": "two"}, {"g": "three"}]
    admitted = await store.admit(
        [keys.entry(item, n) for n, item in enumerate(items, 1)], Position(3)
    )
    assert [job.host for job in admitted] == ["one", "two", ""]
    await store.close()
    first, second, invalid = await (await open_store(input_name="<map m.f>")).pending(0, 10)
    assert (first.item.key, first.item.group, first.item.value) == ("7", "one", items[0])
    assert (first.host, first.line, first.error, first.target) == ("one", 1, None, None)
    assert (second.item.key, second.host) == ("8", "two")
    assert invalid.error is not None and invalid.error.kind is ErrorKind.INVALID_ITEM
    assert invalid.error.message == "item 3: KeyError: 'id'" and invalid.host == ""
    assert invalid.item.value == {"g": "three"}
    with pytest.raises(TypeError, match="mapped job has an item"):
        invalid.request  # noqa: B018 - the property raises


# -- the sink mark ----------------------------------------------------------------------------


class _WatchedCounts(JobCounts):
    """Counts that note the thread of every change made to them."""

    __slots__ = ()
    writers: ClassVar[list[str]] = []

    def __setattr__(self, name: str, value: object) -> None:
        _WatchedCounts.writers.append(threading.current_thread().name)
        super().__setattr__(name, value)


async def test_counts_change_on_the_event_loop_only(open_store: Opener) -> None:
    # The engine reads ``counts`` on the event loop while the journal's thread commits:
    # the thread must never change them under it (only the loop does, between awaits).
    store = await open_store()
    store.counts.__class__ = _WatchedCounts
    _WatchedCounts.writers.clear()
    jobs = await store.admit(entries("http://a/1", "http://a/2"), Position(2, 30))
    await store.complete(
        [(jobs[0], ok_result(jobs[0])), (jobs[1], failed_result(jobs[1]))], SinkMark()
    )
    loop_thread = threading.current_thread().name
    assert _WatchedCounts.writers  # the counts did change
    assert set(_WatchedCounts.writers) == {loop_thread}
    assert (store.counts.admitted, store.counts.ok, store.counts.failed) == (2, 1, 1)


async def test_save_mark_round_trip(tmp_path: Path, open_store: Opener) -> None:
    store = await open_store()
    mark = SinkMark(17, {"jsonl": 12345, "bodies": 0})
    await store.save_mark(mark)
    await store.close()
    state = await reopened_state(tmp_path)
    assert state.mark == mark


async def test_complete_commits_the_mark(tmp_path: Path, open_store: Opener) -> None:
    store = await open_store()
    jobs = await store.admit(entries("http://a.test/1"), Position(1))
    await store.complete([(jobs[0], ok_result(jobs[0]))], SinkMark(0, {"jsonl": 0}))
    await store.close()
    state = await reopened_state(tmp_path)
    assert state.mark == SinkMark(0, {"jsonl": 0})
    assert state.counts.ok == 1


async def test_complete_sums_each_second_into_the_timeline(
    tmp_path: Path, open_store: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store()
    jobs = await store.admit(entries(*(f"http://a.test/{n}" for n in range(1, 7))), Position(6))
    clock = iter([1_000.2, 1_000.9, 1_002.5])
    clock_module = SimpleNamespace(time=lambda: next(clock))
    monkeypatch.setattr("shoal.store.sqlite.journal.time", clock_module)
    await store.complete(
        [(jobs[0], ok_result(jobs[0])), (jobs[1], failed_result(jobs[1]))], SinkMark()
    )
    # The same second again, and a job that is not final yet (its retry is coming).
    jobs[5].attempts = 1
    await store.complete([(jobs[2], ok_result(jobs[2])), (jobs[5], Retrying(1))], SinkMark())
    await store.complete([(jobs[3], ok_result(jobs[3]))], SinkMark())
    await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.db")) as db:
        rows = db.execute("SELECT * FROM timeline ORDER BY second").fetchall()
    # (second, ok, failed, bytes, attempts): one row a second, however many batches.
    assert rows == [(1000, 2, 1, 4, 5), (1002, 1, 0, 2, 1)]


async def test_describe_keeps_the_latest_settings(tmp_path: Path, open_store: Opener) -> None:
    store = await open_store()
    await store.describe({"limits": {"concurrency": 5}})
    await store.describe({"limits": {"concurrency": 7}, "output": "/x/out.jsonl"})
    await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.db")) as db:
        (value,) = db.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
    assert orjson.loads(value) == {"limits": {"concurrency": 7}, "output": "/x/out.jsonl"}
    await MemoryStore().describe({"kept": False})  # keeps nothing, and does not mind


async def test_a_journal_without_a_timeline_gains_one(tmp_path: Path, open_store: Opener) -> None:
    """A journal made before the timeline existed opens as before, and its next commits
    are on the timeline."""
    store = await open_store()
    jobs = await store.admit(entries("http://a.test/1", "http://a.test/2"), Position(2))
    await store.complete([(jobs[0], ok_result(jobs[0]))], SinkMark())
    await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.db")) as db, db:
        db.execute("DROP TABLE timeline")
    again = await open_store()
    pending = await again.pending(0, 10)
    await again.complete([(pending[0], ok_result(pending[0]))], SinkMark())
    await again.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.db")) as db:
        assert db.execute("SELECT SUM(ok), SUM(failed) FROM timeline").fetchone() == (1, 0)


# -- MemoryStore ------------------------------------------------------------------------------


async def test_memory_store_dedups() -> None:
    store = MemoryStore()
    state = await store.open("<iterable>")
    assert state.resumed is False
    first = await store.admit(entries("http://a.test/1", "http://a.test/1#x"), Position(2))
    second = await store.admit(
        entries("http://a.test/2", "http://a.test/1", "ftp://x.test/", "ftp://x.test/", start=3),
        Position(6),
    )
    assert [job.seq for job in first] == [1]
    assert [(job.seq, job.request.url) for job in second] == [
        (2, "http://a.test/2"),
        (3, "ftp://x.test/"),
        (4, "ftp://x.test/"),
    ]
    assert store.counts.admitted == 4
    assert await store.pending(0, 10) == []


async def test_memory_store_complete_counts_and_numbers_records() -> None:
    store = MemoryStore()
    await store.open("<iterable>")
    jobs = await store.admit(entries("http://a.test/1", "http://a.test/2"), Position(2))
    committed = await store.complete(
        [(jobs[0], ok_result(jobs[0])), (jobs[1], failed_result(jobs[1]))], SinkMark()
    )
    records = committed.records
    assert [seq for seq, _ in records] == [1, 2]
    assert orjson.loads(records[1][1])["error"]["kind"] == "timeout"
    assert store.counts == JobCounts(admitted=2, ok=1, failed=1)
    assert await store.records_after(0, 10) == []
    await store.close()


async def test_every_journal_makes_a_results_record_the_same_way(tmp_path: Path) -> None:
    # Record building is in one place (``record_of``): the stores commit what it makes.
    journals: list[Journal] = [MemoryStore(), SQLiteStore(str(tmp_path / "journal.db"))]
    made = []
    for journal in journals:
        await journal.open(INPUT)
        jobs = await journal.admit(entries("http://a.test/1", "http://a.test/2"), Position(2))
        results = [ok_result(jobs[0]), failed_result(jobs[1])]
        committed = await journal.complete(list(zip(jobs, results, strict=True)), SinkMark())
        assert [record for _, record in committed.records] == [record_of(r) for r in results]
        made.append(committed.records)
        await journal.close()
    assert made[0] == made[1]
