"""The embedded journal: one SQLite file per job, written by one thread in batches.

Tables:

* ``requests`` — one row per distinct request: ``seq`` (admission order), ``key`` (16-byte
  dedup key, unique), ``line``, ``spec`` (the request in compact form), ``state`` (0 pending,
  1 ok, 2 failed), ``attempts``, and for a follow-up its ``depth`` and ``parent`` (the seq
  of the request whose response gave it). Follow-ups are admitted in the transaction that
  commits their parent's record, so the table is also the crawl's frontier: its pending
  rows are what is left to fetch, and its unique keys drop links seen before (on disk,
  whatever their number). A journal made before these two columns gains them.
* ``records`` — the final JSON record of each finished request, keyed by ``done_seq``
  (commit order): the outputs are exactly this table, in this order.
* ``meta`` — the input position, whether the input is exhausted, the sink mark, counts, and
  ``settings``: the latest run's settings as JSON (see :meth:`Store.describe`).
* ``timeline`` — what was committed in each second (Unix time of the commit): final records
  ok and failed, their body bytes and attempts. One row per second in which a commit
  happened, however many requests it held, so it grows with the job's duration, not its
  size; ``shoal report`` draws throughput over time from it. A journal made before the
  table existed gains it on its next run (and has no timeline for earlier runs).

The database runs in WAL mode with ``synchronous=NORMAL``: a commit survives the process
being killed at any moment; a power loss may lose the last commits but never corrupts the
file, and the outputs are cut back to the journal's mark on the next run either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from shoal.errors import JournalError, OutputError
from shoal.job import Entry, Job
from shoal.result import Result
from shoal.sources.source import Position
from shoal.store.specs import JOB_COLUMNS, encode_entry, restore_jobs
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

SCHEMA_VERSION = 1
#: Tries, 10 ms apart, to take a journal's lock before it counts as in use.
_LOCK_TRIES = 5
_PENDING, _OK, _FAILED = 0, 1, 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    line INTEGER,
    spec BLOB NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    depth INTEGER NOT NULL DEFAULT 0,
    parent INTEGER
);
CREATE TABLE IF NOT EXISTS records (
    done_seq INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline (
    second INTEGER PRIMARY KEY,
    ok INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);
"""
_TIMELINE_UPSERT = (
    "INSERT INTO timeline(second, ok, failed, bytes, attempts) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(second) DO UPDATE SET ok = ok + excluded.ok, failed = failed + excluded.failed,"
    " bytes = bytes + excluded.bytes, attempts = attempts + excluded.attempts"
)
_TEMPORARY = """
CREATE TEMP TABLE IF NOT EXISTS deferred (
    host TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (host, seq)
) WITHOUT ROWID;
"""
T = TypeVar("T")


class SQLiteStore(Store):
    """A job journal in one SQLite file. Every call runs on the store's own thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts = JobCounts()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-journal")
        self._db: sqlite3.Connection | None = None
        self._max_seq = 0
        self._done_seq = 0
        self._closed = False
        self._lock_fd: int | None = None

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("the journal is not open")
        return self._db

    # -- opening ---------------------------------------------------------------------------

    async def open(self, input_name: str, fingerprint: str | None = None) -> JobState:
        return await self._call(self._open, input_name, fingerprint)

    def _open(self, input_name: str, fingerprint: str | None) -> JobState:
        if os.path.isdir(self.path):
            raise JournalError(f"{self.path} is a folder, not a journal file")
        self._lock()
        _drop_stale_shared_memory(self.path)
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot open journal {self.path}: {exc}") from exc
        self._db = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-2048")
            db.executescript(_SCHEMA)
            _add_columns(db)
            db.executescript(_TEMPORARY)
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
            with _transaction(db):
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
        self.counts = JobCounts(
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
        return JobState(
            position,
            bool(int(meta.get("input_done", 0))),
            mark,
            self.counts,
            resumed,
            None if recorded is None else str(recorded),
            last_seq,
        )

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
            with _transaction(self._conn):
                self._conn.executemany("INSERT INTO temp.deferred(host, seq) VALUES (?, ?)", rows)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write journal {self.path}: {exc}") from exc

    async def take_deferred(self, host: str, limit: int) -> list[Job]:
        return await self._call(self._take_deferred, host, limit)

    def _take_deferred(self, host: str, limit: int) -> list[Job]:
        db = self._conn
        try:
            with _transaction(db):
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
        return await self._call(self._admit, entries, position)

    def _admit(self, entries: Sequence[Entry], position: Position) -> list[Job]:
        db = self._conn
        by_key: dict[bytes, Entry] = {}
        rows = []
        for entry in entries:
            if entry.key in by_key:
                continue
            by_key[entry.key] = entry
            rows.append((entry.key, entry.line, encode_entry(entry)))
        try:
            with _transaction(db):
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
                admitted = self.counts.admitted + len(new)
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
        self.counts.admitted = admitted
        if new:
            self._max_seq = new[-1][0]
        return [Job.admit(seq, by_key[key]) for seq, key in new]

    async def finish_input(self) -> None:
        await self._call(self._set_meta, [("input_done", 1)])

    def _set_meta(self, items: list[tuple[str, Any]]) -> None:
        try:
            with _transaction(self._conn):
                self._conn.executemany("REPLACE INTO meta(name, value) VALUES (?, ?)", items)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write journal {self.path}: {exc}") from exc

    async def complete(
        self, done: Sequence[Completion], mark: SinkMark, *, budget: int | None = None
    ) -> Committed:
        return await self._call(self._complete, done, mark, budget)

    def _complete(
        self, done: Sequence[Completion], mark: SinkMark, budget: int | None
    ) -> Committed:
        db = self._conn
        states = []
        rows = []
        records: list[Record] = []
        found: list[Entry] = []
        ok = failed = size = attempts = 0
        done_seq = self._done_seq
        dumps = orjson.dumps
        for job, result in done:
            if isinstance(result, Retrying):  # not final: only the attempts made so far
                states.append((_PENDING, result.attempts, job.seq))
                continue
            if job.found:
                found += job.found
            done_seq += 1
            # orjson's bytes keep a buffer of several KiB; an exact copy frees it at once.
            record = memoryview(dumps(result.to_record())).tobytes()
            if result.error is None:
                ok += 1
                state = _OK
            else:
                failed += 1
                state = _FAILED
            size += result.bytes if isinstance(result, Result) else 0
            attempts += result.attempts
            states.append((state, result.attempts, job.seq))
            rows.append((done_seq, job.seq, state == _FAILED, record))
            records.append((done_seq, record))
        try:
            with _transaction(db):
                db.executemany("UPDATE requests SET state = ?, attempts = ? WHERE seq = ?", states)
                if rows:
                    db.executemany(
                        "INSERT INTO records(done_seq, seq, failed, record) VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    # The batch commits in one moment: one row of sums for its second.
                    db.execute(_TIMELINE_UPSERT, (int(time.time()), ok, failed, size, attempts))
                admitted, duplicate, over_budget = self._admit_found(found, budget)
                db.executemany(
                    "REPLACE INTO meta(name, value) VALUES (?, ?)",
                    [
                        ("ok", self.counts.ok + ok),
                        ("failed", self.counts.failed + failed),
                        ("admitted", self.counts.admitted + len(admitted)),
                        *_mark_items(mark),
                    ],
                )
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write journal {self.path}: {exc}") from exc
        self._done_seq = done_seq
        self.counts.ok += ok
        self.counts.failed += failed
        self.counts.admitted += len(admitted)
        if admitted:
            self._max_seq = admitted[-1].seq
        return Committed(records, admitted, duplicate, over_budget)

    def _admit_found(self, found: list[Entry], budget: int | None) -> tuple[list[Job], int, int]:
        """Insert follow-ups (inside the commit's transaction), one by one: each one's seq,
        or whether its key was there already, decides what comes of it."""
        admitted: list[Job] = []
        duplicate = over_budget = 0
        room = None if budget is None else budget - self.counts.admitted
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
        await self._call(self._set_meta, _mark_items(mark))

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

    def _lock(self) -> None:
        """Hold ``PATH.lock`` exclusively while the job runs: one run per journal at a time.

        (A separate file, because closing any descriptor of the database file itself would
        drop SQLite's own locks on it.)
        """
        try:
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # an unwritable place: a fault to fix, not a bad option
            raise OutputError(f"cannot open journal {self.path}: {exc.strerror}") from exc
        # ``shoal status --watch`` holds it shared for an instant to see whether the job
        # runs: a few short retries keep such a look from refusing a run that starts.
        for attempt in range(_LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt == _LOCK_TRIES - 1:
                    os.close(fd)
                    raise JournalError(
                        f"{self.path} is in use: another shoal is running this job"
                    ) from None
                time.sleep(0.01)
        self._lock_fd = fd


def _drop_stale_shared_memory(path: str) -> None:
    """Remove a ``-shm`` file, and an empty ``-wal``, that this process may not write,
    beside a journal it may write.

    A run on a read-only journal leaves such files behind (SQLite gives them the journal's
    mode), and SQLite then refuses to write the journal even once it is writable again.
    The ``-shm`` file is only an index of the WAL, rebuilt on open, and an empty ``-wal``
    holds nothing; no other run uses them, since this one holds the lock.
    """
    if not os.access(path, os.W_OK):
        return
    for suffix in ("-shm", "-wal"):
        extra = path + suffix
        try:
            stale = not os.access(extra, os.W_OK) and (
                suffix == "-shm" or os.path.getsize(extra) == 0
            )
            if stale:
                os.unlink(extra)
        except OSError:
            continue  # absent, or not ours to remove: SQLite will say what is wrong


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode, so without BEGIN
    every statement of an ``executemany`` would commit on its own)."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


def _mark_items(mark: SinkMark) -> list[tuple[str, Any]]:
    return [
        ("mark_done_seq", mark.done_seq),
        ("mark_positions", orjson.dumps(dict(mark.positions))),
    ]


def _add_columns(db: sqlite3.Connection) -> None:
    """Give a journal made before follow-ups existed their columns."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    if "depth" not in columns:
        db.execute("ALTER TABLE requests ADD COLUMN depth INTEGER NOT NULL DEFAULT 0")
    if "parent" not in columns:
        db.execute("ALTER TABLE requests ADD COLUMN parent INTEGER")
