"""Reading a job's journal without touching it: for ``shoal status`` and ``shoal export``.

The journal is opened read-only (SQLite's ``mode=ro``), so it can be read while the job
runs; a running job's later commits simply are not seen.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from shoal.errors import JournalError
from shoal.store.sqlite import SCHEMA_VERSION

_BATCH = 2048


@dataclass(frozen=True, slots=True)
class JobSummary:
    """What a journal says of its job."""

    input: str
    admitted: int
    ok: int
    failed: int
    input_done: bool
    lines_read: int
    #: Final failures by error kind, and final records by status class (``2xx``...).
    by_error: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return self.admitted - self.ok - self.failed


class JournalReader:
    """A read-only view of a journal file. Use it as a context manager."""

    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise JournalError(f"{path} is not a journal file")
        self.path = path
        try:
            uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23")
            self._db = sqlite3.connect(uri + "?mode=ro", uri=True)
            meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise JournalError(f"{path} is not a usable shoal journal: {exc}") from exc
        if int(meta.get("version", 0)) != SCHEMA_VERSION:
            self._db.close()
            raise JournalError(f"{path} was written by another version of shoal")
        self._meta = meta

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._db.close()

    def summary(self) -> JobSummary:
        meta = self._meta
        try:
            errors = self._db.execute(
                "SELECT json_extract(CAST(record AS TEXT), '$.error.kind'), COUNT(*)"
                " FROM records WHERE failed GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
            statuses = self._db.execute(
                "SELECT json_extract(CAST(record AS TEXT), '$.status') / 100, COUNT(*)"
                " FROM records GROUP BY 1 ORDER BY 1"
            ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read journal {self.path}: {exc}") from exc
        return JobSummary(
            input=str(meta.get("input", "")),
            admitted=int(meta.get("admitted", 0)),
            ok=int(meta.get("ok", 0)),
            failed=int(meta.get("failed", 0)),
            input_done=bool(int(meta.get("input_done", 0))),
            lines_read=int(meta.get("input_items", 0)),
            by_error={str(kind): count for kind, count in errors if kind is not None},
            by_status={f"{int(c)}xx": count for c, count in statuses if c is not None},
        )

    def records(self, *, failed: bool | None = None) -> Iterator[bytes]:
        """The final records in commit order (``failed``: only failures, or only successes)."""
        where = "" if failed is None else f" AND failed = {int(failed)}"
        after = 0
        while True:
            try:
                rows = self._db.execute(
                    f"SELECT done_seq, record FROM records WHERE done_seq > ?{where}"
                    " ORDER BY done_seq LIMIT ?",
                    (after, _BATCH),
                ).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"cannot read journal {self.path}: {exc}") from exc
            if not rows:
                return
            after = rows[-1][0]
            for _, record in rows:
                yield bytes(record)
