"""JSON Lines outputs: a file that is repaired on resume, or a stream such as stdout."""

from __future__ import annotations

import os
from typing import BinaryIO

from shoal.sinks.sink import Sink


class JsonlSink(Sink):
    """One record per line in a file.

    On resume the file is cut back to the journal's mark, which drops a torn last line and
    any record written after the last commit of the mark; the records after the mark are
    then written again from the journal.
    """

    def __init__(self, path: str) -> None:
        self.name = "jsonl"
        self.path = path
        self._fd: int | None = None
        self._size = 0

    def open(self, position: int | None) -> bool:
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o644)
        self._fd = fd
        size = os.fstat(fd).st_size
        target = position or 0
        if size < target:
            os.ftruncate(fd, 0)
            self._size = 0
            return False
        if size != target:
            os.ftruncate(fd, target)
        os.lseek(fd, target, os.SEEK_SET)
        self._size = target
        return True

    def write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        assert self._fd is not None
        data = b"\n".join(lines) + b"\n"
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def position(self) -> int:
        return self._size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StreamSink(Sink):
    """One record per line on a stream that cannot be cut back (stdout, a pipe)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.name = "stream"
        self._stream = stream
        self._size = 0

    def open(self, position: int | None) -> bool:
        return True

    def write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        self._stream.write(data)
        self._stream.flush()
        self._size += len(data)

    def position(self) -> int:
        return self._size

    def close(self) -> None:
        self._stream.flush()
