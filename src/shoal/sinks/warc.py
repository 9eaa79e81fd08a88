"""The web archive of a job (``--warc PREFIX``): WARC/1.1 files and a CDXJ index.

Files: ``PREFIX-00000.warc.gz``, ``PREFIX-00001.warc.gz``… each opening with a ``warcinfo``
record and rolled over to the next once it reaches ``max_size`` bytes; then, for each
exchange of a final request (every redirect, then the final response), a ``response``
record holding the bytes received and a ``request`` record holding the request sent,
linked by ``WARC-Concurrent-To``. Every record is its own gzip member. ``PREFIX.cdxj``
indexes each response record, one line per record in the order written.

Exactly once: the archive is appended just before the journal commits the same results,
and the archive's end (the file, its size, and the index's size) commits with them. A
run that resumes cuts the archive back to that end, so records written for results whose
commit a crash prevented are removed before those requests are fetched again: no record
is torn, and no response is archived twice.

Records are written with warcio, on the archive's own thread. The response bytes were
spooled by the fetcher (see :mod:`shoal.capture`).
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import io
import os
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import orjson
import surt
from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from shoal.capture import Capture, Exchange, header_end
from shoal.config import DEFAULT_WARC_MAX_SIZE
from shoal.errors import OutputError
from shoal.fetched import Fetched
from shoal.result import WarcLocation
from shoal.sinks.spool import Spool
from shoal.store.store import ARCHIVE_POSITIONS
from shoal.version import __version__

make_warc_id = StatusAndHeadersParser.make_warc_id

#: The archive's end, as the journal keeps it among the sink mark's positions.
FILE_KEY = ARCHIVE_POSITIONS + "file"
OFFSET_KEY = ARCHIVE_POSITIONS + "offset"
INDEX_KEY = ARCHIVE_POSITIONS + "cdxj"


class WarcArchive:
    """WARC files under a prefix, with their CDXJ index."""

    def __init__(
        self,
        prefix: str,
        *,
        max_size: int = DEFAULT_WARC_MAX_SIZE,
        info: Mapping[str, str] | None = None,
    ) -> None:
        self.prefix = self._base = os.path.abspath(prefix)
        self.folder = os.path.dirname(self.prefix)
        self.index_path = self.prefix + ".cdxj"
        self.max_size = max_size
        self._info = {"software": f"shoal/{__version__}", **(info or {})}
        self.spool = Spool(self.prefix + ".partial", "archive spool")
        # Records are compressed here (see _GzipMember), not by warcio.
        self._writer = WARCWriter(None, gzip=False, warc_version="1.1")
        self._file: IO[bytes] | None = None
        self._index: IO[bytes] | None = None
        self._number = 0
        #: The sizes of the open file and of the index (kept here: tell() costs a syscall).
        self._size = 0
        self._index_size = 0
        self._warcinfo_id = ""

    def file_name(self, number: int) -> str:
        return f"{os.path.basename(self.prefix)}-{number:05d}.warc.gz"

    def _path(self, number: int) -> str:
        return os.path.join(self.folder, self.file_name(number))

    # -- lifetime --------------------------------------------------------------------------

    async def open(
        self, positions: Mapping[str, int] | None, part: str | None = None
    ) -> dict[str, int]:
        """Open at the end the journal committed (``None``: a new archive). A ``part``
        names this run's own files (``PREFIX.PART-00000.warc.gz``, ``PREFIX.PART.cdxj``),
        for a run that shares its job with others writing theirs at once."""
        self.prefix = self._base if part is None else f"{self._base}.{part}"
        self.index_path = self.prefix + ".cdxj"
        await self.spool.open()
        return await self.spool.call(self._open, positions)

    def _open(self, positions: Mapping[str, int] | None) -> dict[str, int]:
        if positions is None or FILE_KEY not in positions:
            number, offset, index_size = 0, 0, 0
        else:
            number = positions[FILE_KEY]
            offset = positions.get(OFFSET_KEY, 0)
            index_size = positions.get(INDEX_KEY, 0)
        try:
            for path in glob.glob(glob.escape(self.prefix) + "-*.warc.gz"):
                found = re.fullmatch(r"-(\d{5,})\.warc\.gz", path[len(self.prefix) :])
                if found and int(found.group(1)) > number:
                    os.unlink(path)  # rolled over to after the committed end
            self._file = _open_at(self._path(number), offset)
            self._index = _open_at(self.index_path, index_size)
        except OutputError:
            self._close()
            raise
        except OSError as exc:
            self._close()
            raise OutputError(f"cannot open archive {self.prefix}: {exc}") from exc
        self._number = number
        self._size, self._index_size = offset, index_size
        if offset > 0:
            self._warcinfo_id = self._find_warcinfo()
        return self.position()

    def _find_warcinfo(self) -> str:
        """The id of the open file's warcinfo record (its first), for the records to come."""
        with open(self._path(self._number), "rb") as file:
            for record in ArchiveIterator(file):
                return str(record.rec_headers.get_header("WARC-Record-ID") or "")
        return ""

    def position(self) -> dict[str, int]:
        """The archive's end, for the journal."""
        return {FILE_KEY: self._number, OFFSET_KEY: self._size, INDEX_KEY: self._index_size}

    async def finish(self) -> None:
        """Close the files at the end of a job (the spool stays, for the next job)."""
        await self.spool.call(self._close)

    def close(self) -> None:
        """Release the spool (after :meth:`finish`)."""
        self.spool.close()

    def _close(self) -> None:
        for file in (self._file, self._index):
            if file is not None:
                with contextlib.suppress(OSError):
                    file.close()
        self._file = self._index = None

    # -- writing ---------------------------------------------------------------------------

    async def append(self, results: Sequence[Fetched]) -> dict[str, int]:
        """Archive the captures of ``results`` (final, in commit order) and set each one's
        :attr:`Result.warc`; the archive's new end, flushed to the operating system."""
        return await self.spool.call(self._append, results)

    def _append(self, results: Sequence[Fetched]) -> dict[str, int]:
        try:
            for result in results:
                capture = result.capture
                if capture is None:
                    continue
                result.capture = None
                try:
                    result.warc = self._archive(capture)
                finally:
                    for path in capture.spools:
                        self.spool.forget(path)
            assert self._file is not None and self._index is not None
            self._file.flush()
            self._index.flush()
        except OSError as exc:
            raise OutputError(f"cannot write archive {self.prefix}: {exc.strerror or exc}") from exc
        return self.position()

    def _archive(self, capture: Capture) -> WarcLocation | None:
        if self._size >= self.max_size:
            self._roll()
        if self._size == 0:
            self._start_file()
        location = None
        for exchange in capture.sent:
            location = self._write_exchange(exchange)
        return location

    def _roll(self) -> None:
        assert self._file is not None
        self._file.close()
        self._number += 1
        self._file = _open_at(self._path(self._number), 0)
        self._size = 0

    def _start_file(self) -> None:
        assert self._file is not None
        name = self.file_name(self._number)
        info = {
            **self._info,
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
            "warc-format/warc-1.1/",
        }
        record = self._writer.create_warcinfo_record(name, info)
        self._warcinfo_id = str(record.rec_headers.get_header("WARC-Record-ID"))
        self._write(record)

    def _write(self, record: Any) -> tuple[int, int]:
        assert self._file is not None
        member = _GzipMember(self._file)
        self._writer.out = member
        self._writer.write_record(record)  # ends with member.flush()
        start = self._size
        self._size += member.size
        return start, member.size

    def _write_exchange(self, exchange: Exchange) -> WarcLocation:
        url = exchange.url
        sent = datetime.fromtimestamp(exchange.sent_at, UTC).replace(tzinfo=None)
        common = [
            ("WARC-Date", datetime_to_iso_date(sent, use_micros=True)),
            ("WARC-Warcinfo-ID", self._warcinfo_id),
        ]
        response = list(common)
        if exchange.peer is not None:
            response.append(("WARC-IP-Address", exchange.peer))
        if exchange.truncated is not None:
            response.append(("WARC-Truncated", exchange.truncated))
        response_id = make_warc_id()
        with _received(exchange) as block:
            offset, size = self._write_block("response", url, response_id, response, block)
        request = [*common, ("WARC-Concurrent-To", response_id)]
        self._write_block("request", url, make_warc_id(), request, _Block.of(exchange.request()))
        name = self.file_name(self._number)
        self._index_line(url, sent.strftime("%Y%m%d%H%M%S"), block, name, offset, size)
        return WarcLocation(name, offset, size)

    def _write_block(
        self,
        kind: str,
        uri: str,
        record_id: str,
        headers: list[tuple[str, str]],
        block: _Block,
    ) -> tuple[int, int]:
        """Write one record whose block is ``block``'s bytes, unchanged: warcio writes the
        WARC headers and the block as given (the digests are known, so it reads it once)."""
        fields = [
            ("WARC-Type", kind),
            ("WARC-Record-ID", record_id),
            ("WARC-Target-URI", uri),
            *headers,
            ("WARC-Payload-Digest", block.payload_digest),
            ("WARC-Block-Digest", block.block_digest),
            ("Content-Type", f"application/http; msgtype={kind}"),
            ("Content-Length", str(block.length)),
        ]
        warc_headers = StatusAndHeaders("", fields, protocol=self._writer.warc_version)
        record = ArcWarcRecord("warc", kind, warc_headers, block.stream, None, None, block.length)
        return self._write(record)

    def _index_line(
        self, url: str, timestamp: str, block: _Block, name: str, offset: int, size: int
    ) -> None:
        fields: dict[str, str] = {"url": url}
        status, mime = _status_and_type(block.head)
        if mime:
            fields["mime"] = mime
        if status:
            fields["status"] = status
        fields.update(
            digest=block.payload_digest, length=str(size), offset=str(offset), filename=name
        )
        line = f"{surt.surt(url)} {timestamp} ".encode() + orjson.dumps(fields) + b"\n"
        assert self._index is not None
        self._index.write(line)
        self._index_size += len(line)


class _Block:
    """An HTTP message as a record's block: its bytes (a stream), their length, its two
    SHA-1 digests (the block; the payload, after the header section, as warcio computes
    and checks it), and its header section.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        whole, payload = hashlib.sha1(), hashlib.sha1()
        head = b""
        end = -1
        length = 0
        while chunk := stream.read(_READ_BYTES):
            length += len(chunk)
            whole.update(chunk)
            if end >= 0:
                payload.update(chunk)
                continue
            head += chunk
            end = header_end(head)
            if end >= 0:
                payload.update(head[end:])
                head = head[:end]
        stream.seek(0)
        self.length = length
        self.block_digest = _digest(whole)
        self.payload_digest = _digest(payload)
        self.head = head if end >= 0 else b""

    @classmethod
    def of(cls, data: bytes) -> _Block:
        return cls(io.BytesIO(data))


_READ_BYTES = 1024 * 1024


def _digest(hasher: Any) -> str:
    return "sha1:" + base64.b32encode(hasher.digest()).decode()


def _status_and_type(head: bytes) -> tuple[str | None, str | None]:
    """A response's status code and media type, read from its header section."""
    lines = head.decode("latin-1").splitlines()
    if not lines:
        return None, None
    first = lines[0].split()
    status = first[1] if len(first) > 1 and first[0].startswith("HTTP/") else None
    mime = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            mime = value.split(";", 1)[0].strip() or None
            break
    return status, mime


class _GzipMember:
    """Where warcio writes one record: compressed as one gzip member into ``file``.

    warcio's own gzip wrapper compresses at level 9 and flushes the file after each
    record; this one uses zlib's default level (most of level 9's ratio, several times
    faster) and leaves flushing the file to the end of each batch.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 31)
        self.size = 0

    def write(self, data: bytes) -> None:
        compressed = self._compressor.compress(data)
        if compressed:
            self._file.write(compressed)
            self.size += len(compressed)

    def flush(self) -> None:
        compressed = self._compressor.flush()
        self._file.write(compressed)
        self.size += len(compressed)


@contextlib.contextmanager
def _received(exchange: Exchange) -> Iterator[_Block]:
    """The bytes received for an exchange as a :class:`_Block`: from its spool file (with
    the bytes still in memory appended), or from memory."""
    chunks = exchange.take()
    if exchange.spool is None:
        yield _Block.of(b"".join(chunks))
        return
    with open(exchange.spool, "a+b") as file:
        file.writelines(chunks)
        file.seek(0)
        yield _Block(file)


def _open_at(path: str, size: int) -> IO[bytes]:
    """Open ``path`` for writing at ``size`` bytes: cut back what lies after, refuse a file
    shorter than that (part of the archive was lost outside shoal)."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o644)
    file = os.fdopen(fd, "r+b")
    try:
        actual = os.fstat(fd).st_size
        if actual < size:
            raise OutputError(
                f"{path} holds {actual} bytes, less than the {size} its journal committed: "
                "it was changed outside shoal (restart the job with --restart)"
            )
        if actual > size:
            file.truncate(size)
        file.seek(size)
    except BaseException:
        file.close()
        raise
    return file
