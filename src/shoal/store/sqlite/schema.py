"""The SQLite journal's tables, and the small pieces of SQLite work its store and its
readers share: one explicit transaction, the sink mark's rows, the journal's lock, and
bringing a journal an older shoal made up to date.

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
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import orjson

from shoal.errors import JournalError, OutputError
from shoal.store.store import SinkMark

SCHEMA_VERSION = 1
#: Tries, 10 ms apart, to take a journal's lock before it counts as in use.
LOCK_TRIES = 5
PENDING, OK, FAILED = 0, 1, 2
SCHEMA = """
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
TIMELINE_UPSERT = (
    "INSERT INTO timeline(second, ok, failed, bytes, attempts) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(second) DO UPDATE SET ok = ok + excluded.ok, failed = failed + excluded.failed,"
    " bytes = bytes + excluded.bytes, attempts = attempts + excluded.attempts"
)
TEMPORARY = """
CREATE TEMP TABLE IF NOT EXISTS deferred (
    host TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (host, seq)
) WITHOUT ROWID;
"""


def take_lock(path: str) -> int:
    """Hold ``PATH.lock`` exclusively while the job runs: one run per journal at a time;
    the lock's descriptor (closing it releases the lock).

    (A separate file, because closing any descriptor of the database file itself would
    drop SQLite's own locks on it.)
    """
    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:  # an unwritable place: a fault to fix, not a bad option
        raise OutputError(f"cannot open journal {path}: {exc.strerror}") from exc
    # ``shoal status --watch`` holds it shared for an instant to see whether the job
    # runs: a few short retries keep such a look from refusing a run that starts.
    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if attempt == LOCK_TRIES - 1:
                os.close(fd)
                raise JournalError(f"{path} is in use: another shoal is running this job") from None
            time.sleep(0.01)
    return fd


def drop_stale_shared_memory(path: str) -> None:
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
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode, so without BEGIN
    every statement of an ``executemany`` would commit on its own)."""
    db.execute("BEGIN")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


def mark_items(mark: SinkMark) -> list[tuple[str, Any]]:
    return [
        ("mark_done_seq", mark.done_seq),
        ("mark_positions", orjson.dumps(dict(mark.positions))),
    ]


def add_columns(db: sqlite3.Connection) -> None:
    """Give a journal made before follow-ups existed their columns."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    if "depth" not in columns:
        db.execute("ALTER TABLE requests ADD COLUMN depth INTEGER NOT NULL DEFAULT 0")
    if "parent" not in columns:
        db.execute("ALTER TABLE requests ADD COLUMN parent INTEGER")
