"""Sending final requests of a job again: ``--retry-failed`` (the requests whose final
record is a failure, or of some kinds or statuses) and a crawl given a larger
``--max-depth`` (its pages at the old depth, fetched again for their links).

Reopening happens in the journal, in one transaction, before the run: the chosen requests'
records are deleted, the requests are pending again with no attempts made, the job's counts
lose them, and the sink mark goes back to the start, so that the run writes the outputs
again from the journal: every record it keeps, then the new outcomes as they commit. The
output ends with exactly one record per request, the reopened ones' old records gone. A
kill at any moment after the commit leaves a journal that the next run resumes the same
way (the mark is at the start until the outputs are written again). The web archive,
append-only, keeps its place: the new exchanges are added to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator

import orjson

from shoal.errors import JournalError
from shoal.store.store import ARCHIVE_POSITIONS

_RECORD = "json_extract(CAST(rec.record AS TEXT), '$.{}')"


def reopen_failed(path: str, kinds: frozenset[str], statuses: frozenset[int]) -> int:
    """Make pending again the requests of the journal ``path`` whose final record is a
    failure (of one of ``kinds``, when kinds or statuses are given) or has one of
    ``statuses`` (a failure by ``--fail`` or not); how many."""
    conditions = []
    parameters: list[object] = []
    if kinds:
        marks = ", ".join("?" * len(kinds))
        conditions.append(f"(rec.failed AND {_RECORD.format('error.kind')} IN ({marks}))")
        parameters += sorted(kinds)
    if statuses:
        marks = ", ".join("?" * len(statuses))
        conditions.append(f"{_RECORD.format('status')} IN ({marks})")
        parameters += sorted(statuses)
    where = " OR ".join(conditions) if conditions else "rec.failed"
    return _reopen(
        path,
        f"SELECT rec.done_seq, rec.seq, rec.failed FROM records AS rec WHERE {where}",
        parameters,
    )


def reopen_depth(path: str, depth: int) -> int:
    """Make pending again a crawl's pages at ``depth`` (its earlier ``--max-depth``) that
    were fetched (HTML or XML: the ones with links), so that their links are followed with
    a larger limit; how many."""
    return _reopen(
        path,
        "SELECT rec.done_seq, rec.seq, rec.failed FROM records AS rec"
        " JOIN requests AS r ON r.seq = rec.seq WHERE r.depth = ? AND NOT rec.failed"
        f" AND ({_RECORD.format('content_type')} LIKE '%html%'"
        f" OR {_RECORD.format('content_type')} LIKE '%xml%')",
        [depth],
    )


def recorded_max_depth(path: str) -> int | None:
    """The ``--max-depth`` of the latest run of the crawl kept in the journal ``path``
    (``None``: no such journal, no run recorded, or no limit)."""
    if not os.path.isfile(path):
        return None
    try:
        uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23")
        with contextlib.closing(sqlite3.connect(uri + "?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
    except sqlite3.Error:
        return None  # (the run says what is wrong with it)
    if row is None:
        return None
    depth = (orjson.loads(row[0]).get("crawl") or {}).get("max_depth")
    return None if depth is None else int(depth)


def _reopen(path: str, select: str, parameters: list[object]) -> int:
    if not os.path.isfile(path):
        return 0  # a new job: nothing is final yet
    with _locked(path), contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DROP TABLE IF EXISTS temp.reopened")
            db.execute(f"CREATE TEMP TABLE reopened AS {select}", parameters)
            count, failed = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(failed), 0) FROM temp.reopened"
            ).fetchone()
            if count:
                db.execute(
                    "UPDATE requests SET state = 0, attempts = 0"
                    " WHERE seq IN (SELECT seq FROM temp.reopened)"
                )
                db.execute(
                    "DELETE FROM records WHERE done_seq IN (SELECT done_seq FROM temp.reopened)"
                )
                meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
                raw = meta.get("mark_positions")
                positions = {} if raw is None else orjson.loads(raw)
                # Every output from its start again; the archive goes on where it is.
                kept = {
                    name: size if name.startswith(ARCHIVE_POSITIONS) else 0
                    for name, size in positions.items()
                }
                db.executemany(
                    "REPLACE INTO meta(name, value) VALUES (?, ?)",
                    [
                        ("ok", int(meta.get("ok", 0)) - (count - failed)),
                        ("failed", int(meta.get("failed", 0)) - failed),
                        ("mark_done_seq", 0),
                        ("mark_positions", orjson.dumps(kept)),
                    ],
                )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise JournalError(f"cannot reopen requests in {path}: {exc}") from exc
    return int(count)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Hold the journal's run lock (as a run does) while its requests are reopened."""
    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise JournalError(f"cannot lock journal {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise JournalError(f"{path} is in use: another shoal is running this job") from None
        yield
    finally:
        os.close(fd)
