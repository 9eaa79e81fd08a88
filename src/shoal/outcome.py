"""What one mapped item becomes (``shoal.map``): an :class:`Outcome`, and its JSON record.

An outcome answers the same questions a fetch's :class:`shoal.Result` does for the stages
that count, retry and commit (its error, its attempts, its timing: the :class:`Finished`
protocol); it has no HTTP status, headers or body, which only a :class:`shoal.Result` has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shoal.errors import Error
from shoal.result import iso_time


@dataclass(slots=True, kw_only=True)
class Outcome:
    """The outcome of one item of ``shoal.map``, after all its attempts.

    ``value`` is what the coroutine returned (``None`` on failure); ``error`` is ``None``
    for a success, or why the item failed: kind ``task`` for an exception raised (its
    message ``ExceptionType: text``) or a :class:`shoal.Rejected`, ``timeout`` for a call
    that took longer than its timeout, ``invalid_item`` for an item that could not be
    keyed or journalled. ``started_at`` is the Unix time the last attempt started.
    """

    key: str
    item: Any = None
    group: str | None = None
    value: Any = None
    error: Error | None = None
    attempts: int = 0
    started_at: float | None = None
    elapsed_ms: float | None = None
    line: int | None = None

    @property
    def ok(self) -> bool:
        """True when the call succeeded (no error)."""
        return self.error is None

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready record (see the README's "Mapping a coroutine" section)."""
        return {
            "key": self.key,
            "group": self.group,
            "line": self.line,
            "item": self.item,
            "value": self.value,
            "error": None if self.error is None else self.error.to_record(),
            "attempts": self.attempts,
            "started_at": None if self.started_at is None else iso_time(self.started_at),
            "elapsed_ms": self.elapsed_ms,
        }


class Finished(Protocol):
    """What a task's attempts at one job come to, as the stages that retry, count and commit
    see it: a fetch's :class:`shoal.Result` or a mapped call's :class:`Outcome`. What only
    a response has (status, headers, body) is read after ``isinstance(x, Result)``."""

    @property
    def error(self) -> Error | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def elapsed_ms(self) -> float | None: ...
    @property
    def line(self) -> int | None: ...
    @property
    def ok(self) -> bool: ...
    def to_record(self) -> dict[str, Any]: ...
