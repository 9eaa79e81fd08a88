"""The interface every input source offers to the engine."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from shoal.job import Entry


@dataclass(frozen=True, slots=True)
class Position:
    """How far a source has been read: items consumed and, for files, the byte offset."""

    items: int = 0
    offset: int = 0


class Source(abc.ABC):
    """A lazy reader of input items, read in batches, able to continue where a run stopped."""

    #: Identifies the input in the journal, so a journal is not resumed with another input.
    name: str
    #: Where the next batch starts.
    position: Position = Position()

    @abc.abstractmethod
    async def skip_to(self, position: Position) -> None:
        """Continue after ``position`` (called once, before the first batch)."""

    @abc.abstractmethod
    async def read_batch(self, limit: int) -> list[Entry] | None:
        """Up to ``limit`` parsed entries, or ``None`` at the end of the input.

        A batch may be empty when every line read was blank or a comment.
        """

    async def fingerprint(self, length: int | None = None) -> str | None:
        """``LENGTH:SHA256`` of the input's first bytes, to see on resume that a file was
        not replaced under the same name; ``None`` where there is nothing to compare.
        ``length`` is the recorded fingerprint's (a file that has grown since still agrees).
        """
        return None

    async def grown(self, position: Position) -> bool:
        """Whether the input may hold more than a finished job read of it (up to
        ``position``): a file that grew at its end since, or stdin (which only reading
        tells). A job whose input was read to the end reads on from there when so."""
        return False

    async def wait_total(self) -> int | None:
        """An estimate of the number of items, when one can be had cheaply."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the source holds."""
