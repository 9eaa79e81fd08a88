"""Reading lines of URLs or JSON request objects from a file or stdin, lazily."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import select
import stat
import sys
from typing import BinaryIO

import orjson

from shoal.job import Entry
from shoal.request import Request
from shoal.sources.items import (
    ItemKeys,
    entry_for_mapping,
    entry_for_request,
    invalid_entry,
    invalid_item,
)
from shoal.sources.source import Position, Source

#: Lines longer than this are reported as invalid without being held in memory.
MAX_LINE_BYTES = 1024 * 1024
#: How long one read of a quiet pipe waits before handing back an empty batch.
_PIPE_WAIT_S = 0.25
#: A file's fingerprint covers this much of its start (or all of a shorter file).
_FINGERPRINT_BYTES = 64 * 1024
_COUNT_CHUNK = 1024 * 1024


def parse_line(raw: bytes, line: int, default_method: str = "GET") -> Entry | None:
    """Parse one input line; ``None`` for a blank line or a ``#`` comment.

    ``default_method`` applies to bare URLs and to objects that do not name a method.
    """
    head = raw.lstrip()
    if not head or head.startswith(b"#"):
        return None  # blank, or a comment (whatever bytes follow the '#')
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        return invalid_entry(
            raw.decode("utf-8", "replace").strip(), line, line, f"not valid UTF-8 ({exc.reason})"
        )
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return invalid_entry(text, line, line, f"malformed JSON: {exc}")
        if not isinstance(data, dict):
            return invalid_entry(text, line, line, "a JSON line must be an object")
        return entry_for_mapping(data, line, line, default_method, text)
    hint = url_hint(text)
    if hint is not None:
        return invalid_entry(text, line, line, hint)
    return entry_for_request(Request(text, method=default_method), line, line)


#: ``HOST[:PORT]`` then a path, a query or nothing: a URL written without its scheme.
_SCHEMELESS = re.compile(
    r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d+)?(?:[/?]\S*)?"
)


def url_hint(text: str) -> str | None:
    """What to write instead, for a line that is a URL in quotes or a URL without its
    scheme (``127.0.0.1:8080/page``, ``example.com/page``); ``None`` for anything else."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        inner = text[1:-1].strip()
        if url_hint(inner) is not None and "://" not in inner:
            inner = "http://" + inner
        if inner.lower().startswith(("http://", "https://")):
            return f"quoted URL: remove the quotes (write {inner})"
    if "://" not in text and _SCHEMELESS.fullmatch(text) and _looks_like_host(text):
        return f"no scheme: write http://{text}"
    return None


def _looks_like_host(text: str) -> bool:
    """A dotted name or address, a bracketed IPv6 address, ``localhost``, or a name with a
    port: what a host is most often written as (not a lone word, which may be anything)."""
    host = re.split(r"[/?]", text, maxsplit=1)[0]
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return "." in name or name.startswith("[") or name == "localhost" or ":" in host


class _PipeLines:
    """Lines from a pipe, read so that a wait for more input can end: ``readline`` gives
    ``None`` when no whole line arrives within the timeout (``b""`` at the end)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._ended = False

    def readline(self, limit: int, timeout_s: float | None = None) -> bytes | None:
        while True:
            cut = self._buffer.find(b"\n", 0, limit) + 1
            if cut or len(self._buffer) >= limit or (self._ended and self._buffer):
                cut = cut or min(limit, len(self._buffer))
                line, self._buffer = self._buffer[:cut], self._buffer[cut:]
                return line
            if self._ended:
                return b""
            if timeout_s is not None and not select.select([self._fd], [], [], timeout_s)[0]:
                return None
            chunk = os.read(self._fd, 1 << 16)
            if chunk:
                self._buffer += chunk
            else:
                self._ended = True


class FileSource(Source):
    """Lines from a file, or from stdin when ``path`` is ``"-"``.

    The file is read a batch at a time in a worker thread; a regular file is resumed by
    seeking to the saved byte offset, a pipe by skipping the lines already read. A batch
    from a pipe ends early when no more lines are ready, so the lines already there are
    fetched (and an interrupt is seen) while the pipe is quiet.
    """

    def __init__(self, path: str, *, default_method: str = "GET") -> None:
        self._path = path
        self._method = default_method
        if path == "-":
            self.name = "-"
            self._file: BinaryIO = sys.stdin.buffer
        else:
            self.name = os.path.abspath(path)
            self._file = open(path, "rb")  # noqa: SIM115 - closed in aclose
        self._seekable = stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
        self._pipe = None if self._seekable else _PipeLines(self._file.fileno())
        self.position = Position()
        #: Where a resumed run was to read on (``skip_to``: where the job's reading had
        #: stopped), and where it did: for stdin, fewer ``items`` than the job had read
        #: say that this input holds fewer lines than the one before.
        self.resumed_at: Position | None = None
        self.skipped: Position | None = None

    def items(self, keys: ItemKeys, name: str) -> Source:
        """This file read as the JSON items of a map (``keys`` makes each line's entry),
        not as requests, under ``name`` in the journal: a view that reads (and moves) this
        source, which stays a source of requests under its own name."""
        return _ItemLines(self, keys, name)

    def _readline(self, limit: int, timeout_s: float | None = None) -> bytes | None:
        if self._pipe is None:
            return self._file.readline(limit)
        return self._pipe.readline(limit, timeout_s)

    async def skip_to(self, position: Position) -> None:
        await asyncio.to_thread(self._skip_to, position)

    async def fingerprint(self, length: int | None = None) -> str | None:
        if not self._seekable or self._path == "-":
            # A pipe is read once: nothing to compare it with. Stdin from a file may be
            # another file each run (one that holds the rest of the input, say).
            return None
        return await asyncio.to_thread(self._fingerprint, length)

    def _fingerprint(self, length: int | None) -> str:
        size = _FINGERPRINT_BYTES if length is None else length
        head = os.pread(self._file.fileno(), size, 0)  # a shorter file gives fewer bytes
        return f"{len(head)}:{hashlib.sha256(head).hexdigest()}"

    async def grown(self, position: Position) -> bool:
        if self._path == "-":
            return True  # stdin: only reading it past the lines read before tells
        return await asyncio.to_thread(self._size) > position.offset

    def _size(self) -> int:
        return os.fstat(self._file.fileno()).st_size

    def _skip_to(self, position: Position) -> None:
        self.resumed_at = self.skipped = position
        if self._seekable:
            size = self._size()
            if size < position.offset:  # (stdin from a shorter file)
                self.skipped = Position(position.items, size)
            position = self._after_torn_line(position, size)
            self._file.seek(position.offset)
        else:
            for number in range(position.items):
                raw = self._readline(MAX_LINE_BYTES)
                if not raw:
                    self.skipped = Position(number, 0)
                    break
                if not raw.endswith(b"\n"):
                    self._discard_rest_of_line()
        self.position = position

    def _after_torn_line(self, position: Position, size: int) -> Position:
        """Where to read on in a file whose last line read had no newline then (it was
        read as a line at the end of the input) and which has grown since.

        Only a newline added: reading goes on after it. The line continued: that line is
        read again whole, under its own line number, as the file now has it (a request
        that differs from the fragment's is a new one; the fragment keeps its record).
        """
        offset = position.offset
        if offset == 0 or size <= offset:
            return position
        fd = self._file.fileno()
        if os.pread(fd, 1, offset - 1) == b"\n":
            return position  # the last line read was whole
        ending = os.pread(fd, 2, offset)
        if ending.startswith(b"\n") or ending == b"\r\n":
            return Position(position.items, offset + (1 if ending.startswith(b"\n") else 2))
        # The torn line's start: after the newline before it (bounded: a longer line was
        # recorded as invalid whatever its end, and stays so).
        reach = min(offset, MAX_LINE_BYTES)
        head = os.pread(fd, reach, offset - reach)
        cut = head.rfind(b"\n")
        if cut < 0 and reach < offset:
            return position
        return Position(position.items - 1, offset - reach + cut + 1)

    async def read_batch(self, limit: int) -> list[Entry] | None:
        return await asyncio.to_thread(self._read_batch, limit)

    def _read_batch(self, limit: int, items: ItemKeys | None = None) -> list[Entry] | None:
        entries: list[Entry] = []
        line = self.position.items
        offset = self.position.offset
        readline = self._readline
        at_end = False
        # Read a bounded number of lines, not of entries, so a file of comments still yields.
        for count in range(limit * 2):
            raw = readline(MAX_LINE_BYTES + 1, 0.0 if count else _PIPE_WAIT_S)
            if raw is None:  # a quiet pipe: hand over what there is
                break
            if not raw:
                at_end = True
                break
            line += 1
            offset += len(raw)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                skipped, blank = self._discard_rest_of_line()
                offset += skipped
                head = raw.lstrip()
                if head.startswith(b"#") or (not head and blank):
                    continue  # a long comment, or a long blank line: skipped like any other
                start = raw[:200].decode("utf-8", "replace")
                message = f"line longer than {MAX_LINE_BYTES} bytes"
                if items is not None:
                    entries.append(invalid_item(start, line, message))
                else:
                    entries.append(invalid_entry(start, line, line, message))
            elif items is not None:
                entry = items.line(raw, line)
                if entry is not None:
                    entries.append(entry)
            else:
                entry = parse_line(raw, line, self._method)
                if entry is not None:
                    entries.append(entry)
            if len(entries) >= limit:
                break
        self.position = Position(line, offset)
        if at_end and not entries:
            return None
        return entries

    def _discard_rest_of_line(self) -> tuple[int, bool]:
        """Skip to the end of the line: the bytes skipped, and whether they were all blank."""
        skipped = 0
        blank = True
        while True:
            chunk = self._readline(MAX_LINE_BYTES) or b""
            skipped += len(chunk)
            blank = blank and not chunk.strip()
            if not chunk or chunk.endswith(b"\n"):
                return skipped, blank

    async def wait_total(self) -> int | None:
        """Count the lines of a regular file (a cheap estimate of the requests in it)."""
        if not self._seekable:
            return None
        # Its own descriptor, closed by the counting thread: the source may close first.
        return await asyncio.to_thread(_count_lines, os.dup(self._file.fileno()))

    async def aclose(self) -> None:
        if self._path != "-":
            self._file.close()


class _ItemLines(Source):
    """A :class:`FileSource` read as JSON items (see :meth:`FileSource.items`)."""

    def __init__(self, lines: FileSource, keys: ItemKeys, name: str) -> None:
        self._lines = lines
        self._keys = keys
        self.name = name

    @property
    def position(self) -> Position:  # type: ignore[override]
        return self._lines.position

    async def skip_to(self, position: Position) -> None:
        await self._lines.skip_to(position)

    async def read_batch(self, limit: int) -> list[Entry] | None:
        return await asyncio.to_thread(self._lines._read_batch, limit, self._keys)

    async def fingerprint(self, length: int | None = None) -> str | None:
        return await self._lines.fingerprint(length)

    async def grown(self, position: Position) -> bool:
        return await self._lines.grown(position)

    async def wait_total(self) -> int | None:
        return await self._lines.wait_total()

    async def aclose(self) -> None:
        await self._lines.aclose()


def _count_lines(fd: int) -> int:
    """Lines in the file open at ``fd`` (which this closes), read with ``pread``."""
    count = 0
    offset = 0
    last = b"\n"
    try:
        while chunk := os.pread(fd, _COUNT_CHUNK, offset):
            count += chunk.count(b"\n")
            offset += len(chunk)
            last = chunk[-1:]
    finally:
        os.close(fd)
    return count + (last != b"\n")
