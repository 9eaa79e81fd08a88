"""The interface of one output. Its methods run on the outputs' writer thread."""

from __future__ import annotations

import abc


class Sink(abc.ABC):
    """An append-only output of committed records that can be cut back to a position."""

    #: Names the output in the journal's sink mark.
    name: str

    @abc.abstractmethod
    def open(self, position: int | None) -> bool:
        """Open for appending at ``position`` (``None``: a new job, start empty).

        Returns ``False`` when the output holds less than ``position`` (it was lost or cut
        short): the caller then rewrites it from the first record.
        """

    @abc.abstractmethod
    def write(self, lines: list[bytes]) -> None:
        """Append one JSON record per line (the lines have no newline)."""

    @abc.abstractmethod
    def position(self) -> int:
        """How many bytes the output holds."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release."""
