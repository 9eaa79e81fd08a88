"""Undoing a response body's content codings, a piece at a time.

Content-Encoding lists the codings in the order they were applied (RFC 9110 8.4); they
are undone in reverse. shoal undoes gzip (x-gzip is its old name), deflate (zlib-wrapped
as the RFC says, or raw as some servers send it), br and zstd; identity is no coding. The
libraries do the decoding (zlib, Brotli, zstd); this module only drives them. shoal does it
rather than leave it to aiohttp for two reasons: a coded stream that stops before its end
(a connection closed mid-body, a chunked body cut short) must be an error, not a shorter
body with a wrong hash, and aiohttp accepts such a body; and a coding it does not know must
not pass off the coded bytes as the body. Each decoder hands out its output a piece at a
time, so a body is measured against max_bytes as it grows, however small the coded bytes
are (a bomb).
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator
from typing import Any, ClassVar

from multidict import CIMultiDictProxy

# The br and zstd codings come with aiohttp[speedups]; without them aiohttp does not ask
# for those codings either (its Accept-Encoding lists what it can decode).
try:
    import brotli  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover
    brotli = None
try:
    if sys.version_info >= (3, 14):
        from compression.zstd import ZstdDecompressor, ZstdError
    else:
        from backports.zstd import ZstdDecompressor, ZstdError
    _HAS_ZSTD = True
except ImportError:  # pragma: no cover
    _HAS_ZSTD = False


#: Decoded output is taken from a decoder about this much at a time.
_PIECE = 64 * 1024
#: Streams of one coding one after another (gzip members, zstd frames) in one body.
_MAX_MEMBERS = 1024
#: Codings one Content-Encoding may list (each adds a decoder to the chain).
_MAX_CODINGS = 4
#: What the decoding libraries raise on data that is not what its coding says.
_INVALID: tuple[type[Exception], ...] = (
    (zlib.error, EOFError)
    + ((brotli.error,) if brotli is not None else ())
    + ((ZstdError,) if _HAS_ZSTD else ())
)


class Undecodable(Exception):
    """A body whose content coding cannot be undone: unknown, invalid, or cut short."""

    def __init__(self, header: str, reason: str) -> None:
        super().__init__(reason)
        self.header = header  # the Content-Encoding as sent
        self.reason = reason


class _Stage:
    """Undoes one content coding: one stream (member) after another."""

    #: May a stream of this coding follow another in one body (gzip members do)?
    concatenates: ClassVar[bool] = True

    def __init__(self, coding: str, header: str) -> None:
        self.coding = coding
        self.header = header
        self.members = 0
        #: At the end of a stream, or before the first: the body may end here.
        self.ended = True
        #: Output (or input past the end of a stream) is waiting: call decode(b"").
        self.more = False
        self._member: Any = None  # the library's decompressor of the current stream
        self._after = b""  # input past the end of the last stream

    def decode(self, data: bytes) -> bytes:
        """Feed ``data`` (b"" for more of what is waiting): about _PIECE bytes at most."""
        if self._after:
            data, self._after = self._after + data, b""
        if self.ended:
            self.more = False
            if not data:
                return b""
            if self.members and not self.concatenates:
                raise Undecodable(self.header, f"data after the end of the {self.coding} stream")
            self.members += 1
            if self.members > _MAX_MEMBERS:
                raise Undecodable(
                    self.header, f"more than {_MAX_MEMBERS} {self.coding} streams in a row"
                )
            self._open(data)
            self.ended = False
        try:
            return self._step(data)
        except _INVALID as exc:
            raise Undecodable(self.header, f"the data is not valid {self.coding} ({exc})") from exc

    def _open(self, data: bytes) -> None:
        raise NotImplementedError

    def _step(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _stream_ended(self, unused: bytes) -> None:
        self.ended = True
        self._after = unused
        self.more = bool(unused)


class _Zlib(_Stage):
    """gzip and deflate."""

    def _open(self, data: bytes) -> None:
        if self.coding != "deflate":
            wbits = 16 + zlib.MAX_WBITS  # a gzip header and trailer
        elif data[0] & 0x0F == 8 and (len(data) < 2 or (data[0] << 8 | data[1]) % 31 == 0):
            wbits = zlib.MAX_WBITS  # a zlib header (method 8, and its check bits)
        else:
            wbits = -zlib.MAX_WBITS  # raw deflate
        self._member = zlib.decompressobj(wbits)

    def _step(self, data: bytes) -> bytes:
        member = self._member
        tail = member.unconsumed_tail  # the input a previous call had no room to decode
        out: bytes = member.decompress(tail + data if data else tail, _PIECE)
        if member.eof:
            self._stream_ended(member.unused_data)
        else:
            self.more = bool(member.unconsumed_tail) or len(out) >= _PIECE
        return out


class _Brotli(_Stage):
    """br: one stream per body."""

    concatenates = False

    def _open(self, data: bytes) -> None:
        self._member = brotli.Decompressor()

    def _step(self, data: bytes) -> bytes:
        member = self._member
        out = bytes(member.process(data, output_buffer_limit=_PIECE))
        if member.is_finished():
            self._stream_ended(b"")  # bytes past its end fail in process()
        else:
            # It may hold more output than it gave, and says so only by giving it: ask
            # until it gives none (and until it takes input again).
            self.more = bool(out) or not member.can_accept_more_data()
        return out


class _Zstd(_Stage):
    """zstd: frames one after another."""

    def _open(self, data: bytes) -> None:
        self._member = ZstdDecompressor()

    def _step(self, data: bytes) -> bytes:
        member = self._member
        out: bytes = member.decompress(data, _PIECE)
        if member.eof:
            self._stream_ended(member.unused_data)
        else:
            self.more = not member.needs_input
        return out


#: The codings shoal undoes, by the name in Content-Encoding (lower case).
_STAGES: dict[str, type[_Stage]] = {"gzip": _Zlib, "x-gzip": _Zlib, "deflate": _Zlib}
if brotli is not None:
    _STAGES["br"] = _Brotli
if _HAS_ZSTD:
    _STAGES["zstd"] = _Zstd


class Decoder:
    """Undoes a body's content codings, the last one applied first, a piece at a time."""

    def __init__(self, header: str, codings: list[str]) -> None:
        self.header = header
        self._stages: list[_Stage] = []
        #: Why the body cannot be decoded; said once a byte of it comes (a HEAD answer,
        #: a 304 or an empty body has nothing to decode).
        self._refused: str | None = None
        unknown = [coding for coding in codings if coding not in _STAGES]
        if unknown:
            known = ", ".join(_STAGES)
            self._refused = f"unknown coding {unknown[0]!r} (shoal decodes {known})"
        elif len(codings) > _MAX_CODINGS:
            self._refused = f"more than {_MAX_CODINGS} codings"
        else:
            self._stages = [_STAGES[coding](coding, header) for coding in reversed(codings)]

    @classmethod
    def of(cls, headers: CIMultiDictProxy[str]) -> Decoder | None:
        """The decoder of a response with these headers; None if it has no coding."""
        values = headers.getall("Content-Encoding", [])
        codings = [token.strip().lower() for value in values for token in value.split(",")]
        codings = [coding for coding in codings if coding and coding != "identity"]
        return cls(", ".join(values), codings) if codings else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of the next coded bytes of the body."""
        if self._refused is not None and data:
            raise Undecodable(self.header, self._refused)
        return self._through(0, data)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._stages):
            if data:
                yield data
            return
        stage = self._stages[index]
        piece = stage.decode(data)
        while True:
            if piece:
                yield from self._through(index + 1, piece)
            if not stage.more:
                return
            piece = stage.decode(b"")

    def finish(self) -> None:
        """Check that the body ended where its coded streams end."""
        for stage in self._stages:
            if not stage.ended:
                raise Undecodable(
                    self.header,
                    f"the {stage.coding} stream stops before its end (the body was cut short)",
                )
