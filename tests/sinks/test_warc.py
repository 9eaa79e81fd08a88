"""``--warc``: WARC/1.1 files read back with warcio, byte for byte what the server sent."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import os
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import surt
from aiohttp import web
from warcio.archiveiterator import ArchiveIterator

import shoal
from shoal import Limits, Network, Outputs, RetryPolicy, Timeouts
from shoal.capture import Capture
from shoal.config import DEFAULT_WARC_MAX_SIZE
from shoal.fetched import Fetched
from shoal.sinks.warc import WarcArchive
from tests.cli.test_disk_faults import (
    assert_clean_stop,
    check_read_only_holds,
    inspect_journal,
    launch,
    read_only,
)
from tests.command import RESOLVE, lines
from tests.command import shoal as run_shoal
from tests.conftest import resolver
from tests.helpers import engine_options, read_records
from tests.servers import Misbehaving, serve

TEXT = b"The quick brown fox jumps over the lazy dog.\n" * 40
GZIPPED = gzip.compress(TEXT, mtime=0)


def _chunked(data: bytes, pieces: int) -> bytes:
    step = -(-len(data) // pieces)
    out = b""
    for start in range(0, len(data), step):
        piece = data[start : start + step]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


#: Exact responses, as bytes on the wire (path -> (bytes sent, the decoded body)).
WIRE = {
    "/plain": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 11\r\nX-Archive-Test: one\r\n\r\nhello world",
        b"hello world",
    ),
    "/gzip": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: " + str(len(GZIPPED)).encode() + b"\r\n\r\n" + GZIPPED,
        TEXT,
    ),
    "/chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        + _chunked(TEXT, 4),
        TEXT,
    ),
    "/gzip-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(GZIPPED, 3),
        TEXT,
    ),
    # An interim response first: aiohttp skips it, and so does the archive.
    "/early-hints": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhints",
        b"hints",
    ),
    "/not-found": (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope",
        b"nope",
    ),
}


async def _wire(request: web.Request) -> web.StreamResponse:
    """Write the path's response as exact bytes, then close the connection."""
    transport = request.transport
    assert transport is not None
    transport.write(WIRE[request.path][0])
    await asyncio.sleep(0.05)
    transport.close()
    return web.Response()


@pytest.fixture
async def wire() -> AsyncIterator[int]:
    app = web.Application()
    for path in WIRE:
        app.router.add_get(path, _wire)
    runner, port = await serve(app)
    try:
        yield port
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Archived:
    """What a test reads back from a record."""

    url: str
    final_url: str | None
    status: int | None
    sha256: str | None
    warc: dict[str, Any] | None


async def archive(
    urls: list[Any], tmp_path: Path, warc_max_size: int = DEFAULT_WARC_MAX_SIZE, **options: Any
) -> list[Archived]:
    options.setdefault("retry", RetryPolicy(retries=2, backoff_base_s=0.001))
    engine = shoal.Engine(
        timeouts=Timeouts(total_s=5, connect_s=2, read_s=2),
        outputs=Outputs(warc=str(tmp_path / "crawl"), warc_max_size=warc_max_size),
        **engine_options({"resolver": resolver(), **options}),
    )
    async with engine:
        await engine.run(urls, journal=str(tmp_path / "job"), output=str(tmp_path / "out.jsonl"))
    fields = ("url", "final_url", "status", "sha256", "warc")
    return [Archived(**{k: r[k] for k in fields}) for r in read_records(tmp_path / "out.jsonl")]


def warc_files(tmp_path: Path, pattern: str = "crawl-*.warc.gz") -> list[Path]:
    return sorted(tmp_path.glob(pattern))


def records(path: Path, parse: bool = True) -> list[Any]:
    """Every record of a WARC file, its content read (``parse``: HTTP headers parsed)."""
    found = []
    with path.open("rb") as file:
        for record in ArchiveIterator(file, no_record_parse=not parse):
            record.raw = record.raw_stream.read() if not parse else None
            record.body = record.content_stream().read() if parse else None
            found.append(record)
    return found


def warcio_check(*paths: Path) -> None:
    """``warcio check`` (warcio's own digest verification) passes on every file."""
    import subprocess

    script = os.path.join(os.path.dirname(sys.executable), "warcio")
    done = subprocess.run([script, "check", "-v", *map(str, paths)], capture_output=True)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert b"digest pass" in done.stdout and b"fail" not in done.stdout


def assert_archived_once(files: list[Path], urls: list[str]) -> None:
    """The files pass ``warcio check`` and hold one response for each URL, and no other."""
    warcio_check(*files)
    archived = [
        r.rec_headers.get_header("WARC-Target-URI")
        for f in files
        for r in records(f)
        if r.rec_type == "response"
    ]
    assert sorted(archived) == sorted(urls)


def read_at(tmp_path: Path, location: dict[str, Any], parse: bool = True) -> Any:
    """The one record at a record's ``warc`` location (a gzip member read on its own)."""
    with (tmp_path / location["filename"]).open("rb") as file:
        file.seek(location["offset"])
        member = file.read(location["length"])
    found = []
    for record in ArchiveIterator(io.BytesIO(member), no_record_parse=not parse):
        found.append(
            (record, record.raw_stream.read() if not parse else record.content_stream().read())
        )
    assert len(found) == 1
    return found[0]


async def test_responses_are_archived_as_sent_on_the_wire(wire: int, tmp_path: Path) -> None:
    urls = [f"http://a.test:{wire}{path}" for path in WIRE]
    results = await archive(urls, tmp_path)
    assert len(results) == len(WIRE)
    [path] = warc_files(tmp_path)
    warcio_check(path)
    for result in results:
        assert result.warc is not None
        sent, decoded = WIRE[result.url.split(str(wire), 1)[1]]
        if sent.startswith(b"HTTP/1.1 103"):
            sent = sent.split(b"\r\n\r\n", 1)[1]
        # The record's whole block is exactly the bytes the server wrote: status line,
        # headers, chunk framing and gzip as they were.
        record, block = read_at(tmp_path, result.warc, parse=False)
        assert record.rec_type == "response"
        assert block == sent
        # Read the usual way, warcio undoes chunking and gzip: the decoded body, which is
        # what the record's sha256 describes.
        record, body = read_at(tmp_path, result.warc)
        assert body == decoded
        assert hashlib.sha256(body).hexdigest() == result.sha256
        headers = record.rec_headers
        assert headers.get_header("WARC-Target-URI") == result.url
        assert headers.get_header("WARC-IP-Address") == "127.0.0.1"
        assert headers.get_header("WARC-Date").endswith("Z")
        assert headers.get_header("WARC-Payload-Digest").startswith("sha1:")
        assert headers.get_header("WARC-Block-Digest").startswith("sha1:")
        assert record.http_headers.get_statuscode() == str(result.status)


async def test_each_file_opens_with_warcinfo_and_requests_follow_responses(
    server: Misbehaving, tmp_path: Path
) -> None:
    post = {"url": server.url("/echo"), "method": "POST", "body": "a=1&b=2"}
    await archive(
        [server.url("/ok"), post], tmp_path, network=Network(headers={"X-Team": "archive"})
    )
    [path] = warc_files(tmp_path)
    found = records(path)
    assert found[0].rec_type == "warcinfo"
    info = found[0].body.decode()
    assert "software: shoal/" in info and "format: WARC File Format 1.1" in info
    assert found[0].rec_headers.get_header("WARC-Filename") == path.name
    assert all(r.rec_headers.protocol == "WARC/1.1" for r in found)
    info_id = found[0].rec_headers.get_header("WARC-Record-ID")
    pairs = [found[1:3], found[3:5]]
    assert len(found) == 5
    for response, request in pairs:
        assert (response.rec_type, request.rec_type) == ("response", "request")
        assert request.rec_headers.get_header("WARC-Concurrent-To") == (
            response.rec_headers.get_header("WARC-Record-ID")
        )
        assert request.rec_headers.get_header("WARC-Target-URI") == (
            response.rec_headers.get_header("WARC-Target-URI")
        )
        assert response.rec_headers.get_header("WARC-Warcinfo-ID") == info_id
        assert request.http_headers.get_header("X-Team") == "archive"
        assert request.http_headers.get_header("Host") == f"a.test:{server.port}"
    posted = [r for r in found if r.rec_type == "request" and r.http_headers.protocol == "POST"]
    assert len(posted) == 1 and posted[0].body == b"a=1&b=2"
    assert posted[0].http_headers.statusline == "/echo HTTP/1.1"


async def test_every_redirect_is_archived_and_the_record_points_at_the_last(
    server: Misbehaving, tmp_path: Path
) -> None:
    [result] = await archive([server.url("/redirect/3")], tmp_path)
    [path] = warc_files(tmp_path)
    warcio_check(path)
    responses = [r for r in records(path) if r.rec_type == "response"]
    assert [r.http_headers.get_statuscode() for r in responses] == ["302", "302", "302", "200"]
    assert [r.rec_headers.get_header("WARC-Target-URI") for r in responses] == [
        server.url("/redirect/3"),
        server.url("/redirect/2"),
        server.url("/redirect/1"),
        server.url("/ok"),
    ]
    assert all(r.body for r in responses)  # a redirect's body is archived whole too
    assert result.warc is not None
    record, body = read_at(tmp_path, result.warc)
    assert record.rec_headers.get_header("WARC-Target-URI") == result.final_url
    assert body == b"ok"


async def test_a_large_body_is_spooled_and_archived_whole(
    server: Misbehaving, tmp_path: Path
) -> None:
    size = 3 * 1024 * 1024 + 17
    [result] = await archive([server.url(f"/big?size={size}")], tmp_path)
    assert result.warc is not None
    _record, body = read_at(tmp_path, result.warc)
    assert len(body) == size and body == b"b" * size
    warcio_check(*warc_files(tmp_path))
    assert not (tmp_path / "crawl.partial").exists()  # no temporary file left


async def test_only_the_final_attempt_is_archived_and_failures_not_at_all(
    server: Misbehaving, tmp_path: Path
) -> None:
    flaky, partial = server.url("/flaky/k1?fail=2"), server.url("/partial")
    results = {r.url: r for r in await archive([flaky, partial], tmp_path)}
    assert results[flaky].status == 200 and results[flaky].warc is not None
    # Headers came, then the connection closed mid-body: a failure, not archived.
    assert results[partial].warc is None and results[partial].sha256 is None
    responses = [r for r in records(warc_files(tmp_path)[0]) if r.rec_type == "response"]
    assert len(responses) == 1  # the two 503s before it were not final
    assert responses[0].body == b"recovered"
    assert server.log.paths["/flaky/k1"] == 3


async def test_too_large_is_not_archived(server: Misbehaving, tmp_path: Path) -> None:
    [result] = await archive(
        [server.url("/big?size=500000")], tmp_path, limits=Limits(max_bytes=100_000)
    )
    assert result.warc is None
    assert [r.rec_type for r in records(warc_files(tmp_path)[0])] == []


async def test_files_roll_over_at_the_size_and_the_index_points_into_them(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url(f"/ok?size={1000 + n}") for n in range(6)]
    results = await archive(urls, tmp_path, warc_max_size=1500)
    files = warc_files(tmp_path)
    assert len(files) >= 3
    warcio_check(*files)
    for path in files:
        found = records(path)
        assert found[0].rec_type == "warcinfo"
        assert found[0].rec_headers.get_header("WARC-Filename") == path.name
        assert [r.rec_type for r in found].count("warcinfo") == 1
    # The index: one line per response record, in the order written.
    index = (tmp_path / "crawl.cdxj").read_bytes().splitlines()
    assert len(index) == len(urls)
    by_url = {r.url: r for r in results}
    for line in index:
        key, timestamp, data = line.split(b" ", 2)
        fields = orjson.loads(data)
        result = by_url[fields["url"]]
        assert key.decode() == surt.surt(result.url)
        assert len(timestamp) == 14 and timestamp.isdigit()
        assert fields["status"] == "200" and fields["mime"] == "text/plain"
        location = {
            k: int(fields[k]) if k != "filename" else fields[k]
            for k in ("filename", "offset", "length")
        }
        assert location == result.warc
        record, body = read_at(tmp_path, location)
        assert record.rec_headers.get_header("WARC-Payload-Digest") == fields["digest"]
        assert len(body) == int(result.url.split("size=")[1])


async def test_an_uncommitted_tail_is_cut_back_on_resume(
    server: Misbehaving, tmp_path: Path
) -> None:
    """The archive's end commits with the journal: what was appended after it (a crash
    between the archive and the commit) is removed, in the WARC files and the index."""
    prefix = str(tmp_path / "crawl")
    first = WarcArchive(prefix, max_size=10**9)
    committed = await first.open(None)
    await first.append([await _captured(server, "/ok?size=100")])
    committed = first.position()
    await first.append([await _captured(server, "/ok?size=200")])
    await first.finish()
    first.close()
    path = warc_files(tmp_path)[0]
    assert len([r for r in records(path) if r.rec_type == "response"]) == 2
    # The torn end of a record being written at a kill:
    with path.open("ab") as file:
        file.write(b"\x1f\x8b\x08\x00torn")

    again = WarcArchive(prefix, max_size=10**9)
    assert await again.open(committed) == committed
    await again.append([await _captured(server, "/ok?size=300")])
    await again.finish()
    again.close()
    warcio_check(path)
    bodies = [r.body for r in records(path) if r.rec_type == "response"]
    assert bodies == [b"o" * 100, b"o" * 300]
    assert [r.rec_type for r in records(path)].count("warcinfo") == 1
    index = (tmp_path / "crawl.cdxj").read_bytes().splitlines()
    assert [orjson.loads(line.split(b" ", 2)[2])["url"] for line in index] == [
        server.url("/ok?size=100"),
        server.url("/ok?size=300"),
    ]


async def _captured(server: Misbehaving, path: str) -> Fetched:
    """A final result with its capture, fetched by a real engine's transport."""
    from shoal.fetching.aiohttp_transport import AiohttpTransport
    from shoal.fetching.session import SessionSettings
    from shoal.fetching.transport import Outgoing

    settings = SessionSettings(
        connections=4,
        resolver=resolver(),
        capture=True,
    )
    transport = AiohttpTransport(settings)
    capture = Capture(1024 * 1024)
    try:
        request = Outgoing(method="GET", url=server.url(path), capture=capture)
        async with transport.exchange(request) as response:
            await response.read()
    finally:
        await transport.close()
    return Fetched(url=server.url(path), status=200, capture=capture)


async def test_archive_with_processes(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url(f"/ok?size={n + 1}", host=f"h{n % 5}.test") for n in range(40)]
    out = tmp_path / "out.jsonl"
    (tmp_path / "urls.txt").write_bytes(lines(*urls))
    done = await run_shoal(
        "fetch",
        str(tmp_path / "urls.txt"),
        "-o",
        str(out),
        "--warc",
        str(tmp_path / "crawl"),
        "--processes",
        "2",
        *RESOLVE,
        within_s=60,
    )
    assert done.code == 0, done.stderr
    files = warc_files(tmp_path, "crawl.part-*.warc.gz")
    assert {f.name.split("-0")[0] for f in files} == {"crawl.part-1-of-2", "crawl.part-2-of-2"}
    assert_archived_once(files, urls)
    for record in read_records(out):
        response, _body = read_at(tmp_path, record["warc"])
        assert response.rec_headers.get_header("WARC-Target-URI") == record["url"]


async def test_cli_options_and_errors(server: Misbehaving, tmp_path: Path) -> None:
    bad = await run_shoal("fetch", "-", "--warc", str(tmp_path / "w"), "--warc-max-size", "lots")
    assert bad.code == 2 and "--warc-max-size" in bad.stderr
    zero = await run_shoal("fetch", "-", "--warc", str(tmp_path / "w"), "--warc-max-size", "0")
    assert zero.code == 2 and "--warc-max-size" in zero.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        await check_read_only_holds(locked)
        done = await launch(
            "fetch",
            "-",
            "-o",
            str(tmp_path / "o.jsonl"),
            "--warc",
            str(locked / "crawl"),
            *RESOLVE,
            drop_root=True,
            stdin=lines(server.url("/ok")),
        )
    assert_clean_stop(done, str(locked))
    assert server.log.paths["/ok"] == 0


async def test_the_index_matches_what_cdxj_indexer_writes(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url("/redirect/2"), server.url("/status/404"), server.url("/ok?size=5000")]
    urls += [server.url(f"/ok?size={n}") for n in range(1, 5)]
    await archive(urls, tmp_path, warc_max_size=2000)
    files = warc_files(tmp_path)
    assert len(files) >= 2
    script = os.path.join(os.path.dirname(sys.executable), "cdxj-indexer")
    process = await asyncio.create_subprocess_exec(
        script, *[f.name for f in files], cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    theirs, _ = await process.communicate()
    assert process.returncode == 0

    def parsed(data: bytes) -> list[tuple[bytes, bytes, Any]]:
        return [
            (key, stamp, orjson.loads(rest))
            for key, stamp, rest in (line.split(b" ", 2) for line in data.splitlines())
        ]

    ours = parsed((tmp_path / "crawl.cdxj").read_bytes())
    assert len(ours) == len(urls) + 2  # the two redirects have their own lines
    assert sorted(ours, key=repr) == sorted(parsed(theirs), key=repr)
    # warcio's own index finds every response record where ours says it is.
    listed = set()
    for path in files:
        warcio = os.path.join(os.path.dirname(sys.executable), "warcio")
        process = await asyncio.create_subprocess_exec(
            warcio, "index", str(path), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        for line in out.splitlines():
            entry = orjson.loads(line)
            if entry["warc-type"] == "response":
                listed.add((path.name, int(entry["offset"]), entry["warc-target-uri"]))
    assert listed == {(f["filename"], int(f["offset"]), f["url"]) for _, _, f in ours}


async def test_a_long_redirect_body_is_cut_and_marked_truncated(tmp_path: Path) -> None:
    big = b"r" * (3 * 1024 * 1024)

    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, body=big, headers={"Location": "/there"})

    async def there(request: web.Request) -> web.StreamResponse:
        return web.Response(text="arrived")

    app = web.Application()
    app.router.add_get("/moved", moved)
    app.router.add_get("/there", there)
    runner, port = await serve(app)
    try:
        [result] = await archive([f"http://a.test:{port}/moved"], tmp_path)
    finally:
        await runner.cleanup()
    assert result.status == 200 and result.warc is not None
    [path] = warc_files(tmp_path)
    warcio_check(path)
    redirect, final = [r for r in records(path) if r.rec_type == "response"]
    assert redirect.rec_headers.get_header("WARC-Truncated") == "length"
    assert final.rec_headers.get_header("WARC-Truncated") is None
    assert 1024 * 1024 <= len(redirect.body) < len(big)
    assert final.body == b"arrived"


async def test_restart_begins_the_archive_again_and_a_shortened_file_stops_the_run(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url(f"/ok?size={n}") for n in range(1, 30)]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), "--warc", str(tmp_path / "crawl"))
    options = (*RESOLVE, "--warc-max-size", "3KiB", "--progress", "off")
    first = await run_shoal(*args, *options)
    assert first.code == 0, first.stderr
    assert len(warc_files(tmp_path)) > 3
    again = await run_shoal(*args, *options, "--restart")
    assert again.code == 0, again.stderr
    files = warc_files(tmp_path)
    assert_archived_once(files, urls)  # once each: the first job's archive is gone
    # CSV export carries the location.
    exported = await run_shoal("export", str(output), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(exported.stdout.decode())))
    by_url = {r["url"]: r for r in read_records(output)}
    for row in rows:
        warc = by_url[row["url"]]["warc"]
        assert (row["warc_filename"], row["warc_offset"], row["warc_length"]) == (
            warc["filename"],
            str(warc["offset"]),
            str(warc["length"]),
        )
    # Part of the archive lost outside shoal: the next run refuses to go on.
    last = files[-1]
    with last.open("r+b") as file:
        file.truncate(last.stat().st_size // 2)
    lost = await run_shoal(*args, *options)
    assert lost.code == 3, lost.stderr
    assert last.name in lost.stderr and "Traceback" not in lost.stderr


async def test_over_the_memory_budget_responses_wait_in_spool_files(
    server: Misbehaving, tmp_path: Path
) -> None:
    """Finished responses waiting to be archived hold at most a budget of memory; past it
    they wait on disk, and are archived the same."""
    urls = [server.url(f"/ok?size={50_000 + n}") for n in range(30)]
    engine = shoal.Engine(
        network=shoal.Network(resolver=resolver()), outputs=Outputs(warc=str(tmp_path / "crawl"))
    )
    engine._artifacts.budget.limit = 0  # no response fits: each one waits in a file
    spilled: list[int] = []
    original = engine._artifacts.budget.hold

    def hold(capture: Capture) -> bool:
        fits = original(capture)
        spilled.append(not fits)
        assert engine._artifacts.budget.held == 0
        return fits

    engine._artifacts.budget.hold = hold  # type: ignore[method-assign]
    async with engine:
        await engine.run(urls, journal=str(tmp_path / "job"), output=str(tmp_path / "out.jsonl"))
    assert spilled == [True] * len(urls)
    assert engine._artifacts.budget.held == 0  # every capture was released once archived
    assert_archived_once(warc_files(tmp_path), urls)
    for record in read_records(tmp_path / "out.jsonl"):
        _, body = read_at(tmp_path, record["warc"])
        assert body == b"o" * int(record["url"].split("size=")[1])
    assert not (tmp_path / "crawl.partial").exists()


async def test_a_full_disk_under_the_archive_stops_cleanly_then_resumes(
    tmp_path: Path,
) -> None:
    """The archive hits the file-size limit mid-run: exit 3 naming it, the journal intact;
    the next run cuts the archive back to what was committed and finishes exactly once."""

    async def noise(request: web.Request) -> web.StreamResponse:  # does not compress
        await asyncio.sleep(0.03)  # answers come in a trickle: several commits before the fault
        return web.Response(body=random.Random(request.match_info["n"]).randbytes(100_000))

    app = web.Application()
    app.router.add_get("/noise/{n}", noise)
    runner, port = await serve(app)
    try:
        urls = [f"http://a.test:{port}/noise/{n}" for n in range(40)]
        output = tmp_path / "out.jsonl"
        archive = ("--warc", str(tmp_path / "crawl"), "-c", "2", "--progress", "off")
        args = ("fetch", "-", "-o", str(output), *archive, *RESOLVE)
        stopped = await launch(*args, size_limit=1_000_000, stdin=lines(*urls))
        assert_clean_stop(stopped, "cannot write archive", "File too large")
        check, recorded = inspect_journal(tmp_path / "out.jsonl.journal")
        assert check == "ok"
        assert 0 < len(recorded) < len(urls), "the fault should come mid-run"
        resumed = await launch(*args, stdin=lines(*urls))
    finally:
        await runner.cleanup()
    assert resumed.code == 0, resumed.stderr
    assert_archived_once(warc_files(tmp_path), urls)
    for record in read_records(output):
        _, body = read_at(tmp_path, record["warc"])
        assert hashlib.sha256(body).hexdigest() == record["sha256"]


async def test_a_run_without_warc_in_between_keeps_the_archive(
    server: Misbehaving, tmp_path: Path
) -> None:
    """A job resumed once without --warc, then with it again, goes on with its archive:
    what the first run archived stays, and nothing is cut or archived twice."""
    urls = [server.url(f"/delay?s=0.01&n={n}") for n in range(60)]
    journal, prefix = str(tmp_path / "job"), str(tmp_path / "crawl")

    async def some(engine: shoal.Engine, count: int) -> None:
        output = str(tmp_path / "out.jsonl")
        async with engine, engine.stream(urls, journal=journal, output=output) as results:
            async for _ in results:
                count -= 1
                if count == 0:
                    break

    await some(
        shoal.Engine(
            network=shoal.Network(resolver=resolver()),
            outputs=Outputs(warc=prefix),
            limits=Limits(concurrency=4),
        ),
        10,
    )
    await some(
        shoal.Engine(network=shoal.Network(resolver=resolver()), limits=Limits(concurrency=4)), 10
    )
    engine = shoal.Engine(network=shoal.Network(resolver=resolver()), outputs=Outputs(warc=prefix))
    async with engine:
        await engine.run(urls, journal=journal, output=str(tmp_path / "out.jsonl"))
    records = read_records(tmp_path / "out.jsonl")
    archived = [r for r in records if r["warc"] is not None]
    # The second run committed at least the 10 it delivered (the results of a batch).
    assert len(records) == 60 and 10 <= len(records) - len(archived) <= 40
    assert_archived_once(warc_files(tmp_path), [r["url"] for r in archived])
    for record in archived:
        response, body = read_at(tmp_path, record["warc"])
        assert response.rec_headers.get_header("WARC-Target-URI") == record["url"]
        assert body == b"late"


async def test_https_exchanges_are_archived_as_decrypted_bytes(tmp_path: Path) -> None:
    """Over TLS, the record holds the HTTP bytes inside the encryption, as for plain HTTP."""
    import ssl

    import trustme

    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("a.test").configure_cert(context)
    app = web.Application()
    app.router.add_get("/chunked", _wire)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        # The test's own CA is not in the system store: certificates are not checked here.
        [result] = await archive(
            [f"https://a.test:{port}/chunked"], tmp_path, network=Network(verify_tls=False)
        )
    finally:
        await runner.cleanup()
    assert result.status == 200 and result.warc is not None
    record, block = read_at(tmp_path, result.warc, parse=False)
    assert block == WIRE["/chunked"][0]
    assert record.rec_headers.get_header("WARC-Target-URI") == f"https://a.test:{port}/chunked"
    assert record.rec_headers.get_header("WARC-IP-Address") == "127.0.0.1"
    warcio_check(*warc_files(tmp_path))
