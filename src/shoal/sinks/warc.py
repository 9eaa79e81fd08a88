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
spooled by the fetcher (see :mod:`shoal.fetching.capture`).
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import orjson
import surt
from warcio.archiveiterator import ArchiveIterator
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from shoal.config import DEFAULT_WARC_MAX_SIZE
from shoal.errors import OutputError
from shoal.fetching.capture import Capture, Exchange
from shoal.result import Result, WarcLocation
from shoal.sinks.spool import Spool
from shoal.version import __version__

#: The archive's end, as the journal keeps it among the sink mark's positions.
FILE_KEY = "warc.file"
OFFSET_KEY = "warc.offset"
INDEX_KEY = "warc.cdxj"


class WarcArchive:
    """WARC files under a prefix, with their CDXJ index."""

    def __init__(
        self,
        prefix: str,
        *,
        max_size: int = DEFAULT_WARC_MAX_SIZE,
        info: Mapping[str, str] | None = None,
    ) -> None:
        self.prefix = os.path.abspath(prefix)
        self.folder = os.path.dirname(self.prefix)
        self.index_path = self.prefix + ".cdxj"
        self.max_size = max_size
        self._info = {"software": f"shoal/{__version__}", **(info or {})}
        self.spool = Spool(self.prefix + ".partial", "archive spool")
        self._writer = WARCWriter(None, gzip=True, warc_version="1.1")
        self._file: IO[bytes] | None = None
        self._index: IO[bytes] | None = None
        self._number = 0
        self._warcinfo_id = ""

    def file_name(self, number: int) -> str:
        return f"{os.path.basename(self.prefix)}-{number:05d}.warc.gz"

    def _path(self, number: int) -> str:
        return os.path.join(self.folder, self.file_name(number))

    # -- lifetime --------------------------------------------------------------------------

    async def open(self, positions: Mapping[str, int] | None) -> dict[str, int]:
        """Open at the end the journal committed (``None``: a new archive)."""
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
        assert self._file is not None and self._index is not None
        return {
            FILE_KEY: self._number,
            OFFSET_KEY: self._file.tell(),
            INDEX_KEY: self._index.tell(),
        }

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

    async def append(self, results: Sequence[Result]) -> dict[str, int]:
        """Archive the captures of ``results`` (final, in commit order) and set each one's
        :attr:`Result.warc`; the archive's new end, flushed to the operating system."""
        return await self.spool.call(self._append, results)

    def _append(self, results: Sequence[Result]) -> dict[str, int]:
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
        file = self._file
        assert file is not None
        if file.tell() >= self.max_size:
            self._roll()
        if self._file is not None and self._file.tell() == 0:
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
        file = self._file
        assert file is not None
        self._writer.out = file
        start = file.tell()
        self._writer.write_record(record)
        return start, file.tell() - start

    def _write_exchange(self, exchange: Exchange) -> WarcLocation:
        assert exchange.url is not None
        date = datetime_to_iso_date(
            datetime.fromtimestamp(exchange.sent_at, UTC).replace(tzinfo=None), use_micros=True
        )
        headers = {"WARC-Date": date, "WARC-Warcinfo-ID": self._warcinfo_id}
        if exchange.peer is not None:
            headers["WARC-IP-Address"] = exchange.peer
        if exchange.truncated:
            headers["WARC-Truncated"] = "length"
        with _received(exchange) as (stream, length):
            response = self._writer.create_warc_record(
                exchange.url,
                "response",
                payload=stream,
                length=length,
                warc_headers_dict=dict(headers),
            )
            offset, size = self._write(response)
        response_id = response.rec_headers.get_header("WARC-Record-ID")
        headers.pop("WARC-IP-Address", None)
        headers.pop("WARC-Truncated", None)
        headers["WARC-Concurrent-To"] = response_id
        request = self._writer.create_warc_record(
            exchange.url,
            "request",
            payload=io.BytesIO(exchange.request),
            length=len(exchange.request),
            warc_headers_dict=headers,
        )
        self._write(request)
        name = self.file_name(self._number)
        self._index_line(exchange.url, date, response, name, offset, size)
        return WarcLocation(name, offset, size)

    def _index_line(
        self, url: str, date: str, record: Any, name: str, offset: int, size: int
    ) -> None:
        http = record.http_headers
        fields: dict[str, str] = {"url": url}
        mime = http.get_header("Content-Type") if http is not None else None
        if mime:
            fields["mime"] = mime.split(";", 1)[0].strip()
        if http is not None:
            fields["status"] = http.get_statuscode()
        digest = record.rec_headers.get_header("WARC-Payload-Digest")
        if digest:
            fields["digest"] = digest
        fields.update(length=str(size), offset=str(offset), filename=name)
        timestamp = re.sub(r"\D", "", date)[:14]
        line = f"{surt.surt(url)} {timestamp} ".encode() + orjson.dumps(fields) + b"\n"
        assert self._index is not None
        self._index.write(line)


class _received:
    """The bytes received for an exchange, as a readable stream and its length: its spool
    file (with the bytes still in memory appended), or the bytes in memory."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._file: IO[bytes] | None = None

    def __enter__(self) -> tuple[IO[bytes], int]:
        exchange = self._exchange
        chunks = exchange.take()
        if exchange.spool is None:
            data = b"".join(chunks)
            return io.BytesIO(data), len(data)
        self._file = file = open(exchange.spool, "a+b")
        file.writelines(chunks)
        length = file.tell()
        file.seek(0)
        return file, length

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


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
