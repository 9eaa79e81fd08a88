"""A raw HTTP server on 127.0.0.1 that sends exact bytes, and the content codings to send.

aiohttp.web would frame and encode a response its own way; these tests need the wire
under their control (a coded stream cut short, a Content-Length the body never reaches,
garbage labelled gzip), so the server is a plain asyncio one. Each route is the whole
response as bytes; every response says ``Connection: close`` and the server closes the
connection after it (a body without Content-Length or chunks ends there). The server keeps
the request headers each path was asked with, to check what the client advertised.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Callable
from functools import cache

import brotli  # type: ignore[import-untyped]
from backports import zstd

MiB = 1024 * 1024


def gzip_encode(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def zlib_encode(data: bytes) -> bytes:
    return zlib.compress(data)


def raw_deflate_encode(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def br_encode(data: bytes) -> bytes:
    return bytes(brotli.compress(data, quality=5))


def zstd_encode(data: bytes) -> bytes:
    return zstd.compress(data)


#: Each way of coding a body: name -> (the Content-Encoding it is sent with, the encoder).
#: ``deflate`` is the zlib-wrapped stream RFC 9110 names; ``raw-deflate`` is the bare
#: stream some servers send under the same name.
CODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip_encode),
    "deflate": ("deflate", zlib_encode),
    "raw-deflate": ("deflate", raw_deflate_encode),
    "br": ("br", br_encode),
    "zstd": ("zstd", zstd_encode),
}


def _raw_deflate_zeros(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes (whole MiBs), made in milliseconds:
    once the window holds only zeros, every further MiB compresses to the same bytes."""
    assert size % MiB == 0 and size >= 2 * MiB
    zeros = bytes(MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    steady = compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return first + steady * (size // MiB - 1) + compressor.flush()


def _zeros_check(size: int, function: Callable[[bytes, int], int], start: int) -> int:
    zeros, value = bytes(MiB), start
    for _ in range(size // MiB):
        value = function(zeros, value)
    return value


@cache
def zeros(name: str, size: int) -> bytes:
    """``size`` zero bytes (whole MiBs, at least 2) in the coding ``name`` of CODINGS: a
    bomb, kilobytes on the wire for a body of any size."""
    if name == "raw-deflate":
        return _raw_deflate_zeros(size)
    if name == "deflate":
        adler = _zeros_check(size, zlib.adler32, 1)
        return b"\x78\xda" + _raw_deflate_zeros(size) + struct.pack(">I", adler)
    if name == "gzip":
        crc = _zeros_check(size, zlib.crc32, 0)
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
        return header + _raw_deflate_zeros(size) + trailer
    chunk, pieces = bytes(MiB), size // MiB
    if name == "br":
        compressor = brotli.Compressor(quality=1)
        parts = [compressor.process(chunk) for _ in range(pieces)]
        return b"".join(bytes(part) for part in parts) + bytes(compressor.finish())
    assert name == "zstd"
    packer = zstd.ZstdCompressor()
    return b"".join(packer.compress(chunk) for _ in range(pieces)) + packer.flush()


def response(
    body: bytes,
    *headers: str,
    length: int | None = -1,
    chunked: bool = False,
    status: str = "200 OK",
) -> bytes:
    """A whole response as bytes: ``length`` is the Content-Length sent (-1: the body's
    own, None: none, the body ends where the connection closes); ``chunked`` frames the
    body as one chunk and the last one."""
    head = [f"HTTP/1.1 {status}", "Content-Type: application/octet-stream", *headers]
    head.append("Connection: close")
    if chunked:
        head.append("Transfer-Encoding: chunked")
        body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif length is not None:
        head.append(f"Content-Length: {len(body) if length == -1 else length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class CodingServer:
    """``routes[path] = response(...)``, ``await start()``, ``url(path)``, ``await stop()``."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        #: The request headers (names in lower case) each path was last asked with.
        self.asked: dict[str, dict[str, str]] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def url(self, path: str, host: str = "a.test") -> str:
        return f"http://{host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *fields = head.decode("latin-1").split("\r\n")
            path = line.split(" ")[1].split("?")[0]
            self.asked[path] = {
                name.strip().lower(): value.strip()
                for name, _, value in (field.partition(":") for field in fields if field)
            }
            writer.write(self.routes[path])
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._connections.discard(task)
