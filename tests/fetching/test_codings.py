"""Every content coding a server sends: decoded and hashed as decoded, stopped at max_bytes
however small on the wire, archived as sent, or failed with a kind and words a person can
read. A raw server on 127.0.0.1 writes the exact bytes (tests/coding_server.py)."""

from __future__ import annotations

import base64
import hashlib
import random
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shoal import ErrorKind, Limits
from shoal.fetching.decoding import Decoder
from tests.coding_server import CODINGS, CodingServer, MiB, br_encode, gzip_encode, response, zeros
from tests.command import RESOLVE, lines, shoal
from tests.fetching.test_failures import fetch_one
from tests.helpers import read_records
from tests.sinks.test_warc import archive, read_at, warc_files, warcio_check

_random = random.Random(2024)
#: About 200 KB of text that compresses, as pages do: more than one decoded piece.
_WORDS = ["shoal", "fish", "sea", "net", "tide", "reef"]
BODY = b"".join(
    f"{n} {' '.join(_random.choice(_WORDS) for _ in range(9))}\n".encode() for n in range(5000)
)
DIGEST = hashlib.sha256(BODY).hexdigest()
NAMES = list(CODINGS)


@pytest.fixture
async def coding_server() -> AsyncIterator[CodingServer]:
    server = CodingServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def advertised(server: CodingServer, path: str) -> set[str]:
    """The codings the request to ``path`` said it accepts (Accept-Encoding, as received)."""
    header = server.asked[path].get("accept-encoding", "")
    return {token.split(";")[0].strip() for token in header.split(",") if token.strip()}


# -- decoded -----------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("name", NAMES)
async def test_each_coding_is_decoded(coding_server: CodingServer, name: str, framing: str) -> None:
    header, encode = CODINGS[name]
    coded = encode(BODY)
    assert len(coded) < len(BODY) // 3  # it really is coded
    coding_server.routes["/body"] = response(
        coded,
        f"Content-Encoding: {header}",
        length=None if framing == "close" else -1,
        chunked=framing == "chunked",
    )
    result = await fetch_one(coding_server.url("/body"), keep_body=True)
    assert result.ok, result.error
    assert result.status == 200
    assert result.bytes == len(BODY)
    assert result.sha256 == DIGEST
    assert result.body == BODY
    assert result.headers is not None and result.headers["Content-Encoding"] == header
    assert header in advertised(coding_server, "/body")


async def test_every_coding_is_advertised(coding_server: CodingServer) -> None:
    coding_server.routes["/plain"] = response(b"plain")
    result = await fetch_one(coding_server.url("/plain"))
    assert result.ok, result.error
    assert advertised(coding_server, "/plain") >= {"gzip", "deflate", "br", "zstd"}


@pytest.mark.parametrize(
    ("headers", "coded"),
    [
        pytest.param(("Content-Encoding: x-gzip",), gzip_encode(BODY), id="x-gzip"),
        pytest.param(("Content-Encoding: GZip",), gzip_encode(BODY), id="upper-case"),
        # Applied in the order listed: gzip first, then br; undone br first.
        pytest.param(
            ("Content-Encoding: gzip, br",), br_encode(gzip_encode(BODY)), id="gzip-then-br"
        ),
        pytest.param(
            ("Content-Encoding: gzip", "Content-Encoding: br"),
            br_encode(gzip_encode(BODY)),
            id="two-header-lines",
        ),
        pytest.param(
            ("Content-Encoding: identity, gzip",), gzip_encode(BODY), id="identity-and-gzip"
        ),
        # Two gzip members one after another are one body (as gzip -c a b makes).
        pytest.param(
            ("Content-Encoding: gzip",),
            gzip_encode(BODY[:1000]) + gzip_encode(BODY[1000:]),
            id="gzip-members",
        ),
    ],
)
async def test_stacked_and_spelled_codings_are_decoded(
    coding_server: CodingServer, headers: tuple[str, ...], coded: bytes
) -> None:
    coding_server.routes["/body"] = response(coded, *headers)
    result = await fetch_one(coding_server.url("/body"), keep_body=True)
    assert result.ok, result.error
    assert result.bytes == len(BODY) and result.sha256 == DIGEST and result.body == BODY


@pytest.mark.parametrize("headers", [(), ("Content-Encoding: identity",)], ids=["none", "identity"])
async def test_unencoded_body_is_taken_as_is(
    coding_server: CodingServer, headers: tuple[str, ...]
) -> None:
    coding_server.routes["/plain"] = response(BODY, *headers)
    result = await fetch_one(coding_server.url("/plain"), keep_body=True)
    assert result.ok, result.error
    assert result.bytes == len(BODY) and result.sha256 == DIGEST and result.body == BODY


@pytest.mark.parametrize("name", NAMES)
async def test_empty_coded_body_is_an_empty_body(coding_server: CodingServer, name: str) -> None:
    # Nothing to decode: no coded stream was ever started, so none was cut short.
    coding_server.routes["/empty"] = response(b"", f"Content-Encoding: {CODINGS[name][0]}")
    result = await fetch_one(coding_server.url("/empty"), keep_body=True)
    assert result.ok, result.error
    assert result.bytes == 0 and result.body == b""


@pytest.mark.parametrize("name", NAMES)
async def test_large_coded_body_within_max_bytes_is_decoded_whole(
    coding_server: CodingServer, name: str
) -> None:
    # Many decoded pieces from few coded bytes, all of them counted and hashed.
    size = 6 * MiB
    coding_server.routes["/zeros"] = response(
        zeros(name, size), f"Content-Encoding: {CODINGS[name][0]}"
    )
    result = await fetch_one(coding_server.url("/zeros"), limits=Limits(max_bytes=size))
    assert result.ok, result.error
    assert result.bytes == size
    assert result.sha256 == hashlib.sha256(bytes(size)).hexdigest()


# -- bombs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_bomb_stops_at_max_bytes_without_decoding_it_whole(
    coding_server: CodingServer, name: str
) -> None:
    decoded = 128 * MiB
    bomb = zeros(name, decoded)
    assert len(bomb) < decoded // 1000  # kilobytes on the wire
    header = CODINGS[name][0]
    coding_server.routes["/bomb"] = response(bomb, f"Content-Encoding: {header}")
    tracemalloc.start()
    try:
        result = await fetch_one(coding_server.url("/bomb"), limits=Limits(max_bytes=MiB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error is not None, result
    assert result.error.kind is ErrorKind.TOO_LARGE
    assert result.error.message == (
        f"body larger than --max-bytes (1 MiB) once decoded (Content-Encoding: {header})"
    )
    # Decoded a piece at a time and stopped: a small fraction of the bomb was ever held
    # (the whole run, server and engine included, stays far below its decoded size).
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB while fetching a {name} bomb"


# -- broken bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["short-of-length", "closed", "chunked"])
@pytest.mark.parametrize("name", NAMES)
async def test_coded_body_cut_short_fails(coding_server: CodingServer, name: str, cut: str) -> None:
    header, encode = CODINGS[name]
    coded = encode(BODY)
    half = coded[: len(coded) // 2]
    if cut == "short-of-length":  # Content-Length promises more than comes before the close
        wire = response(half, f"Content-Encoding: {header}", length=len(coded))
    elif cut == "closed":  # no length: the close ends the body, mid-stream
        wire = response(half, f"Content-Encoding: {header}", length=None)
    else:  # a whole chunked message, whose coded stream stops half-way
        wire = response(half, f"Content-Encoding: {header}", chunked=True)
    coding_server.routes["/cut"] = wire
    result = await fetch_one(coding_server.url("/cut"), keep_body=True)
    assert result.error is not None, result
    if cut == "short-of-length":
        assert result.error.kind is ErrorKind.RESET
        assert result.error.message == (
            "Response payload is not completed: Not enough data to satisfy content length"
            f" header (received {len(half)} of {len(coded)} bytes)."
        )
    else:
        assert result.error.kind is ErrorKind.PROTOCOL
        assert result.error.message == (
            f"cannot decode the body (Content-Encoding: {header}): the {header} stream stops"
            " before its end (the body was cut short)"
        )
    assert result.body is None and result.sha256 is None


GARBAGE = b"this is not compressed at all, " * 100


@pytest.mark.parametrize(
    ("header", "coded", "detail"),
    [
        pytest.param("gzip", GARBAGE, "incorrect header check", id="gzip-garbage"),
        pytest.param("deflate", GARBAGE, "invalid code lengths set", id="deflate-garbage"),
        pytest.param("br", GARBAGE, "brotli: decoder failed", id="br-garbage"),
        pytest.param("zstd", GARBAGE, "Unknown frame descriptor", id="zstd-garbage"),
        pytest.param(
            "gzip",
            gzip_encode(BODY)[:-8] + b"\0\0\0\0" + gzip_encode(BODY)[-4:],
            "incorrect data check",
            id="gzip-bad-checksum",
        ),
        pytest.param("gzip", gzip_encode(BODY) + GARBAGE, "incorrect header check", id="gzip+junk"),
        pytest.param("br", br_encode(BODY) + GARBAGE, "brotli: decoder failed", id="br+junk"),
    ],
)
async def test_corrupt_coded_body_fails_as_protocol(
    coding_server: CodingServer, header: str, coded: bytes, detail: str
) -> None:
    coding_server.routes["/corrupt"] = response(coded, f"Content-Encoding: {header}")
    result = await fetch_one(coding_server.url("/corrupt"))
    assert result.error is not None, result
    assert result.error.kind is ErrorKind.PROTOCOL
    message = result.error.message
    assert message.startswith(
        f"cannot decode the body (Content-Encoding: {header}): the data is not valid {header} ("
    ), message
    assert detail in message


@pytest.mark.parametrize("header", ["snappy", "gzip, snappy", "compress"])
async def test_unknown_coding_fails_as_protocol(coding_server: CodingServer, header: str) -> None:
    coding_server.routes["/odd"] = response(
        b"\x01\x02 coded somehow", f"Content-Encoding: {header}"
    )
    result = await fetch_one(coding_server.url("/odd"), keep_body=True)
    assert result.error is not None, result
    assert result.error.kind is ErrorKind.PROTOCOL
    unknown = header.split(", ")[-1]
    assert result.error.message == (
        f"cannot decode the body (Content-Encoding: {header}): unknown coding {unknown!r}"
        " (shoal decodes gzip, x-gzip, deflate, br, zstd)"
    )
    assert result.body is None  # the coded bytes are not passed off as the body


async def test_unknown_coding_without_a_body_is_fine(coding_server: CodingServer) -> None:
    # A HEAD answer names the coding a GET would get, and carries nothing to decode.
    coding_server.routes["/head"] = response(b"", "Content-Encoding: snappy", length=1234)
    result = await fetch_one({"url": coding_server.url("/head"), "method": "HEAD"})
    assert result.ok, result.error
    assert result.bytes == 0


# -- the archive keeps the wire ----------------------------------------------------------------


async def test_warc_keeps_the_coded_bytes_and_the_record_the_decoded_hash(
    coding_server: CodingServer, tmp_path: Path
) -> None:
    coded = br_encode(BODY)
    wire = response(coded, "Content-Encoding: br")
    coding_server.routes["/br"] = wire
    [archived] = await archive([coding_server.url("/br")], tmp_path)
    [record] = read_records(tmp_path / "out.jsonl")
    assert record["error"] is None and record["bytes"] == len(BODY)
    assert archived.sha256 == record["sha256"] == DIGEST
    assert archived.warc is not None
    warc_record, block = read_at(tmp_path, archived.warc, parse=False)
    assert warc_record.rec_type == "response"
    # The block is what the server wrote: its status line, its headers (Content-Encoding:
    # br among them) and the coded body; the payload digest is of the coded body.
    assert block == wire
    assert block.endswith(b"\r\n\r\n" + coded)
    headers = warc_record.rec_headers
    assert headers.get_header("WARC-Payload-Digest") == _sha1(coded)
    assert headers.get_header("WARC-Block-Digest") == _sha1(wire)


@pytest.mark.parametrize("name", NAMES)
async def test_warcio_checks_and_reads_an_archive_of_every_coding(
    coding_server: CodingServer, tmp_path: Path, name: str
) -> None:
    # What `pip install 'shoal[warc]'` installs reads what `shoal fetch --warc` wrote:
    # `warcio check` (the real command) decodes each payload as it verifies the digests,
    # and warcio's reader gives back the decoded body. warcio 1.8.1 stopped on a br
    # payload with "'brotli.Decompressor' object has no attribute 'unused_data'"; 1.8.2
    # without brotlicffi passes the check but hands back the coded bytes.
    header, encode = CODINGS[name]
    coding_server.routes["/coded"] = response(encode(BODY), f"Content-Encoding: {header}")
    prefix = tmp_path / "crawl" / "site"
    done = await shoal(
        "fetch",
        *RESOLVE,
        "--warc",
        str(prefix),
        "-o",
        str(tmp_path / "out.jsonl"),
        "--progress",
        "off",
        stdin=lines(coding_server.url("/coded")),
    )
    assert done.code == 0, done.stderr
    [record] = read_records(tmp_path / "out.jsonl")
    assert record["sha256"] == DIGEST
    [path] = warc_files(tmp_path / "crawl", "site-*.warc.gz")
    warcio_check(path)
    _, body = read_at(tmp_path / "crawl", record["warc"])
    # warcio has no zstd decoder: it hands back the bytes as sent (the docs say so).
    assert body == (encode(BODY) if name == "zstd" else BODY)


def _sha1(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


# -- the decoder itself ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 4096])
@pytest.mark.parametrize("name", NAMES)
def test_decoding_does_not_depend_on_how_the_bytes_arrive(name: str, size: int) -> None:
    header, encode = CODINGS[name]
    coded = encode(BODY)
    decoder = Decoder.of(CIMultiDictProxy(CIMultiDict({"Content-Encoding": header})))
    assert decoder is not None
    pieces = [
        piece
        for start in range(0, len(coded), size)
        for piece in decoder.feed(coded[start : start + size])
    ]
    decoder.finish()
    assert b"".join(pieces) == BODY
    assert max(len(piece) for piece in pieces) <= 128 * 1024
