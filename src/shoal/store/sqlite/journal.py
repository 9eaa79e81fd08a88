"""The embedded journal: one SQLite file per job, written by one thread in batches.

Its tables are described in :mod:`shoal.store.sqlite.schema`.

The database runs in WAL mode with ``synchronous=NORMAL``: a commit survives the process
being killed at any moment; a power loss may lose the last commits but never corrupts the
file, and the outputs are cut back to the journal's mark on the next run either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from shoal.errors import JournalError, OutputError
from shoal.job import Entry, Job
from shoal.sources.source import Position
from shoal.store.journal import sort_batch
from shoal.store.specs import JOB_COLUMNS, encode_entry, restore_jobs
from shoal.store.sqlite import schema
from shoal.store.sqlite.schema import SCHEMA_VERSION
from shoal.store.store import (
    Committed,
    Completion,
    JobCounts,
    JobState,
    Record,
    Retrying,
    SinkMark,
    Store,
)

T = TypeVar("T")


class SQLiteStore(Store):
    """A job journal in one SQLite file. Every call runs on the store's own thread.

    ``counts`` are read on the event loop (by the engine, at any moment): the journal's
    thread keeps counts of its own (``_written``, what the file says) and the loop copies
    them into ``counts`` once each call has returned, so they never change under a reader.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts = JobCounts()
        #: The counts as the journal's thread last wrote them (that thread's alone).
        self._written = JobCounts()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-journal")
        self._db: sqlite3.Connection | None = None
        self._max_seq = 0
        self._done_seq = 0
        self._closed = False
        self._lock_fd: int | None = None

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def _counted(self, function: Callable[..., tuple[T, JobCounts]], *args: Any) -> T:
        """Run a call that changes the counts on the journal's thread, then publish the
        counts it wrote, here on the event loop (all three at once: no await between)."""
        done, written = await self._call(function, *args)
        counts = self.counts
        counts.admitted, counts.ok, counts.failed = written.admitted, written.ok, written.failed
        return done

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("the journal is not open")
        return self._db

    # -- opening ---------------------------------------------------------------------------

    async def open(self, input_name: str, fingerprint: str | None = None) -> JobState:
        return await self._counted(self._open, input_name, fingerprint)

    def _open(self, input_name: str, fingerprint: str | None) -> tuple[JobState, JobCounts]:
        if os.path.isdir(self.path):
            raise JournalError(f"{self.path} is a folder, not a journal file")
        self._lock_fd = schema.take_lock(self.path)
        schema.drop_stale_shared_memory(self.path)
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot open journal {self.path}: {exc}") from exc
        self._db = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-2048")
            db.executescript(schema.SCHEMA)
            schema.add_columns(db)
            db.executescript(schema.TEMPORARY)
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            db.close()
            self._db = None
            raise JournalError(f"{self.path} is not a usable shoal journal: {exc}") from exc
        resumed = bool(meta)
        if not resumed:
            meta = {"version": SCHEMA_VERSION, "input": input_name}
            if fingerprint is not None:
                meta["input_fingerprint"] = fingerprint
            with schema.transaction(db):
                db.executemany("INSERT INTO meta(name, value) VALUES (?, ?)", list(meta.items()))
        elif int(meta.get("version", 0)) != SCHEMA_VERSION:
            raise JournalError(
                f"{self.path} was written by another version of shoal "
                f"(journal schema {meta.get('version')}, expected {SCHEMA_VERSION})"
            )
        elif meta.get("input") != input_name:
            raise JournalError(
                f"{self.path} is the journal of another input ({meta.get('input')!r}); "
                "pass another --job path, or --restart to discard it"
            )
        self._max_seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM requests").fetchone()[0]
        last_seq = self._max_seq
        self._done_seq = db.execute("SELECT COALESCE(MAX(done_seq), 0) FROM records").fetchone()[0]
        self._written = JobCounts(
            admitted=int(meta.get("admitted", 0)),
            ok=int(meta.get("ok", 0)),
            failed=int(meta.get("failed", 0)),
        )
        mark = SinkMark(
            int(meta.get("mark_done_seq", 0)),
            orjson.loads(meta["mark_positions"]) if "mark_positions" in meta else {},
        )
        position = Position(int(meta.get("input_items", 0)), int(meta.get("input_offset", 0)))
        recorded = meta.get("input_fingerprint")
        state = JobState(
            position,
            bool(int(meta.get("input_done", 0))),
            mark,
            self.counts,  # (the loop's: published when this returns)
            resumed,
            None if recorded is None else str(recorded),
            last_seq,
        )
        return state, self._snapshot()

    def _snapshot(self) -> JobCounts:
        """The counts as this thread wrote them, as a copy for the loop to publish."""
        return dataclasses.replace(self._written)

    # -- reading back ----------------------------------------------------------------------

    def _read(self, query: str, parameters: tuple[int, int]) -> list[Any]:
        try:
            return self._conn.execute(query, parameters).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {self.path}: {exc}") from exc

    async def pending(self, after_seq: int, limit: int) -> list[Job]:
        return await self._call(self._pending, after_seq, limit)

    def _pending(self, after_seq: int, limit: int) -> list[Job]:
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM requests AS r LEFT JOIN requests AS p ON p.seq = r.parent"
            " WHERE r.seq > ? AND r.state = 0 ORDER BY r.seq LIMIT ?",
            (after_seq, limit),
        )
        return restore_jobs(rows)

    async def defer(self, jobs: Sequence[Job]) -> None:
        await self._call(self._defer, [(job.host, job.seq) for job in jobs])

    def _defer(self, rows: list[tuple[str, int]]) -> None:
        # A temporary table: deferral lasts one run (a resumed run starts from the pending
        # requests), so it needs no durability, and it stays out of the journal's WAL.
        try:
            with schema.transaction(self._conn):
                self._conn.executemany("INSERT INTO temp.deferred(host, seq) VALUES (?, ?)", rows)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write journal {self.path}: {exc}") from exc

    async def take_deferred(self, host: str, limit: int) -> list[Job]:
        return await self._call(self._take_deferred, host, limit)

    def _take_deferred(self, host: str, limit: int) -> list[Job]:
        db = self._conn
        try:
            with schema.transaction(db):
                rows = db.execute(
                    f"SELECT {JOB_COLUMNS} FROM temp.deferred AS d"
                    " CROSS JOIN requests AS r ON r.seq = d.seq"  # deferred first: by its key
                    " LEFT JOIN requests AS p ON p.seq = r.parent"
                    " WHERE d.host = ? ORDER BY d.seq LIMIT ?",
                    (host, limit),
                ).fetchall()
                if rows:
                    db.execute(
                        "DELETE FROM temp.deferred WHERE host = ? AND seq <= ?",
                        (host, rows[-1][0]),
                    )
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {self.path}: {exc}") from exc
        return restore_jobs(rows)

    async def records_after(self, done_seq: int, limit: int) -> list[Record]:
        return await self._call(self._records_after, done_seq, limit)

    def _records_after(self, done_seq: int, limit: int) -> list[Record]:
        rows = self._read(
            "SELECT done_seq, record FROM records WHERE done_seq > ? ORDER BY done_seq LIMIT ?",
            (done_seq, limit),
        )
        return [(seq, bytes(record)) for seq, record in rows]

    # -- writing ---------------------------------------------------------------------------

    async def admit(self, entries: Sequence[Entry], position: Position) -> list[Job]:
        return await self._counted(self._admit, entries, position)

    def _admit(self, entries: Sequence[Entry], position: Position) -> tuple[list[Job], JobCounts]:
        db = self._conn
        by_key: dict[bytes, Entry] = {}
        rows = []
        for entry in entries:
            if entry.key in by_key:
                continue
            by_key[entry.key] = entry
            rows.append((entry.key, entry.line, encode_entry(entry)))
        try:
            with schema.transaction(db):
                inserted = db.executemany(
                    "INSERT OR IGNORE INTO requests(key, line, spec) VALUES (?, ?, ?)", rows
                ).rowcount
                new: list[tuple[int, bytes]]
                if inserted == len(rows):
                    # No key was seen before: the rows took the next seqs, in order.
                    first = self._max_seq + 1
                    new = [(first + n, row[0]) for n, row in enumerate(rows)]
                else:
                    new = db.execute(
                        "SELECT seq, key FROM requests WHERE seq > ? ORDER BY seq",
                        (self._max_seq,),
                    ).fetchall()
                admitted = self._written.admitted + len(new)
                db.executemany(
                    "REPLACE INTO meta(name, value) VALUES (?, ?)",
                    [
                        ("input_items", position.items),
                        ("input_offset", position.offset),
                        ("admitted", admitted),
                    ],
                )
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write journal {self.path}: {exc}") from exc
        self._written.admitted = admitted
        if new:
            self._max_seq = new[-1][0]
        return [Job.admit(seq, by_key[key]) for seq, key in new], self._snapshot()

    async def finish_input(self) -> None:
        await self._call(self._set_meta, [("input_done", 1)])

    def _set_meta(self, items: list[tuple[str, Any]]) -> None:
        try:
            with schema.transaction(self._conn):
                self._conn.executemany("REPLACE INTO meta(name, value) VALUES (?, ?)", items)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write journal {self.path}: {exc}") from exc

    async def complete(
        self, done: Sequence[Completion], mark: SinkMark, *, budget: int | None = None
    ) -> Committed:
        return await self._counted(self._complete, done, mark, budget)

    def _complete(
        self, done: Sequence[Completion], mark: SinkMark, budget: int | None
    ) -> tuple[Committed, JobCounts]:
        db = self._conn
        batch = sort_batch(done)
        # Each request's state in the batch's order (a retry and then the final result of
        # one request may share a batch: the final one must land last).
        states = [
            (
                schema.PENDING
                if isinstance(result, Retrying)
                else schema.OK
                if result.error is None
                else schema.FAILED,
                result.attempts,
                job.seq,
            )
            for job, result in done
        ]
        first = self._done_seq + 1
        records: list[Record] = [(first + n, record) for n, record in enumerate(batch.encoded)]
        rows = [
            (done_seq, job.seq, result.error is not None, record)
            for (done_seq, record), (job, result) in zip(records, batch.finals, strict=True)
        ]
        written = self._written
        try:
            with schema.transaction(db):
                db.executemany("UPDATE requests SET state = ?, attempts = ? WHERE seq = ?", states)
                if rows:
                    db.executemany(
                        "INSERT INTO records(done_seq, seq, failed, record) VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    # The batch commits in one moment: one row of sums for its second.
                    sums = (batch.ok, batch.failed, batch.bytes, batch.attempts)
                    db.execute(schema.TIMELINE_UPSERT, (int(time.time()), *sums))
                admitted, duplicate, over_budget = self._admit_found(batch.found, budget)
                db.executemany(
                    "REPLACE INTO meta(name, value) VALUES (?, ?)",
                    [
                        ("ok", written.ok + batch.ok),
                        ("failed", written.failed + batch.failed),
                        ("admitted", written.admitted + len(admitted)),
                        *schema.mark_items(mark),
                    ],
                )
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write journal {self.path}: {exc}") from exc
        self._done_seq += len(records)
        written.ok += batch.ok
        written.failed += batch.failed
        written.admitted += len(admitted)
        if admitted:
            self._max_seq = admitted[-1].seq
        return Committed(records, admitted, duplicate, over_budget), self._snapshot()

    def _admit_found(self, found: list[Entry], budget: int | None) -> tuple[list[Job], int, int]:
        """Insert follow-ups (inside the commit's transaction), one by one: each one's seq,
        or whether its key was there already, decides what comes of it."""
        admitted: list[Job] = []
        duplicate = over_budget = 0
        room = None if budget is None else budget - self._written.admitted
        insert = self._conn.execute
        for entry in found:
            if room is not None and len(admitted) >= room:
                over_budget += 1
                continue
            cursor = insert(
                "INSERT OR IGNORE INTO requests(key, line, spec, depth, parent)"
                " VALUES (?, ?, ?, ?, ?)",
                (entry.key, entry.line, encode_entry(entry), entry.depth, entry.parent),
            )
            if cursor.rowcount:
                seq = cursor.lastrowid
                assert seq is not None
                admitted.append(Job.admit(seq, entry))
            else:
                duplicate += 1
        return admitted, duplicate, over_budget

    async def describe(self, settings: Mapping[str, Any]) -> None:
        await self._call(self._set_meta, [("settings", orjson.dumps(settings))])

    async def save_mark(self, mark: SinkMark) -> None:
        await self._call(self._set_meta, schema.mark_items(mark))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._call(self._close)
        finally:
            self._executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None
