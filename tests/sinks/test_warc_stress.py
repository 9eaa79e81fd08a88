"""``--warc`` under stress: kept-alive connections, odd responses, retries, redirects.

A raw server (:class:`Raw`) answers each request with exact bytes, keeps connections alive
unless told otherwise, and remembers what it wrote for each request, so every response
record's block can be compared with the bytes sent for that URL.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import socket
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

import shoal
from shoal import Limits, Network, Outputs, RetryPolicy, Timeouts
from shoal.config import DEFAULT_WARC_MAX_SIZE
from tests.conftest import resolver
from tests.helpers import engine_options, read_records
from tests.sinks.test_warc import read_at, records, warc_files, warcio_check

#: One step of a raw answer: bytes to write, or seconds to wait.
Step = bytes | float


@dataclass
class Asked:
    """A request as the raw server read it."""

    method: str
    path: str
    host: str
    head: bytes
    body: bytes
    connection: int


@dataclass
class Answer:
    """What to send back: the steps, then close the connection (``close``) or keep it."""

    steps: list[Step]
    close: bool = False


@dataclass
class Raw:
    """An HTTP/1.1 server on 127.0.0.1 that answers with exact bytes."""

    respond: Callable[[Asked], Answer]
    asked: list[Asked] = field(default_factory=list)
    #: The bytes written for each request: (host, method, path) -> bytes, in order.
    sent: dict[tuple[str, str, str], list[bytes]] = field(default_factory=dict)
    connections: int = 0
    port: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    server: asyncio.Server | None = None

    async def start(self) -> Raw:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks))
        if self.server is not None:
            await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            pass  # the test ended (see close), or the client went: the connection closes
        finally:
            self.tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # left out of the record
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            asked = Asked(method, path, headers.get("host", ""), head, body, number)
            self.asked.append(asked)
            answer = self.respond(asked)
            sent = self.sent.setdefault((asked.host, method, path), [])
            mine = len(sent)  # this answer's entry (an earlier one may still be writing)
            sent.append(b"")
            for step in answer.steps:
                if isinstance(step, bytes):
                    writer.write(step)
                    sent[mine] += step
                    await writer.drain()
                else:
                    await asyncio.sleep(step)
            if answer.close:
                return

    def url(self, path: str, host: str = "a.test") -> str:
        return f"http://{host}:{self.port}{path}"


Start = Callable[[Callable[[Asked], Answer]], Awaitable[Raw]]


@pytest.fixture
async def raw() -> AsyncIterator[Start]:
    """Start raw servers (``await raw(respond)``); all are closed after the test."""
    made: list[Raw] = []

    async def start(respond: Callable[[Asked], Answer]) -> Raw:
        server = await Raw(respond).start()
        made.append(server)
        return server

    yield start
    for server in made:
        await server.close()


def response(
    body: bytes, status: str = "200 OK", headers: tuple[str, ...] = ("Content-Type: text/plain",)
) -> bytes:
    """A response with a Content-Length, as bytes on the wire."""
    head = f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers)
    head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def chunked(data: bytes, pieces: int, trailer: bytes = b"") -> bytes:
    step = max(1, -(-len(data) // pieces))
    out = b""
    for start in range(0, len(data), step):
        piece = data[start : start + step]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n" + trailer + b"\r\n"


async def run(
    items: list[Any],
    tmp_path: Path,
    *,
    warc_max_size: int = DEFAULT_WARC_MAX_SIZE,
    bodies: str | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Run a job with ``--warc`` and return its records (in the order committed)."""
    options.setdefault("retry", RetryPolicy(retries=2, backoff_base_s=0.001))
    options.setdefault("timeouts", Timeouts(total_s=10, connect_s=2, read_s=3))
    warc = str(tmp_path / "crawl")
    outputs = Outputs(warc=warc, warc_max_size=warc_max_size, bodies=bodies)
    engine = shoal.Engine(outputs=outputs, **engine_options({"resolver": resolver(), **options}))
    output = tmp_path / "out.jsonl"
    async with engine:
        await engine.run(items, journal=str(tmp_path / "job"), output=str(output))
    return read_records(output)


def responses(tmp_path: Path) -> list[Any]:
    return [
        r for f in warc_files(tmp_path) for r in records(f, parse=False) if r.rec_type == "response"
    ]


def block_of(record: Any) -> bytes:
    data: bytes = record.raw
    return data


def target(record: Any) -> str:
    return str(record.rec_headers.get_header("WARC-Target-URI"))


def key_of(url: str) -> tuple[str, str]:
    rest = url.split("://", 1)[1]
    host, _, path = rest.partition("/")
    return host, "/" + path


def unique(n: int, size: int) -> bytes:
    """``size`` bytes that differ for every ``n``."""
    seed = hashlib.sha256(b"%d" % n).digest()
    return (seed * (size // len(seed) + 1))[:size]


# -- connections kept alive, redirects across two hosts ------------------------------------


@pytest.mark.parametrize("max_size", [10**9, 20_000])
async def test_kept_alive_connections_and_cross_host_redirects_hold_their_own_bytes(
    raw: Start, tmp_path: Path, max_size: int
) -> None:
    """Many requests share few connections (kept alive), with redirects from a.test to
    b.test and back, and bodies of every kind: each response record holds exactly the bytes
    the server wrote for that URL, and each request record the request the server read."""

    def final(n: int) -> list[Step]:
        body = unique(n, 50 + n * 37)
        kind = n % 6
        if kind == 0:
            return [response(body)]
        if kind == 1:  # chunked, written in pieces with pauses between them
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            framed = chunked(body, 3)
            third = len(framed) // 3
            return [head, 0.002, framed[:third], 0.002, framed[third:]]
        if kind == 2:
            packed = gzip.compress(body, mtime=0)
            return [
                response(packed, headers=("Content-Type: text/plain", "Content-Encoding: gzip"))
            ]
        if kind == 3:  # large: spooled to a file while it arrives
            return [
                response(unique(n, 300 * 1024 + n), headers=("Content-Type: application/x-big",))
            ]
        if kind == 4:
            return [response(b"", "204 No Content", headers=())]
        return [response(body, "404 Not Found")]

    def respond(asked: Asked) -> Answer:
        parts = asked.path.split("/")
        n = int(parts[2])
        other = f"{'b' if asked.host.startswith('a.') else 'a'}.test:{asked.host.split(':')[1]}"
        if parts[1] == "start" and n % 3 == 0:  # to the other host
            location = f"http://{other}/hop/{n}"
            body = b"see other host %d" % n
            return Answer([response(body, "302 Found", headers=(f"Location: {location}",))])
        if parts[1] == "start" and n % 3 == 1:  # on the same host, then to the other
            return Answer([response(b"", "301 Moved", headers=(f"Location: /hop/{n}",))])
        if parts[1] == "hop" and n % 3 == 1:
            location = f"http://{other}/end/{n}"
            return Answer([response(b"m" * n, "307 Temporary", headers=(f"Location: {location}",))])
        return Answer(final(n))

    server = await raw(respond)
    count = 240
    urls = [server.url(f"/start/{n}", host="ab"[n % 2] + ".test") for n in range(count)]
    results = await run(
        urls, tmp_path, limits=Limits(concurrency=64, per_host=32), warc_max_size=max_size
    )
    sent = sum(len(v) for v in server.sent.values())
    assert server.connections < sent / 3, "connections should be reused"
    files = warc_files(tmp_path)
    assert (len(files) > 5) == (max_size < 10**6)
    warcio_check(*files)
    found = [r for f in files for r in records(f, parse=False)]
    responses = [r for r in found if r.rec_type == "response"]
    assert len(responses) == sent  # one record per exchange, none twice, none left out
    by_id = {r.rec_headers.get_header("WARC-Record-ID"): r for r in responses}
    for record in responses:
        host, path = key_of(target(record))
        [wrote] = server.sent[(host, "GET", path)]
        assert block_of(record) == wrote, target(record)
    asked = {(a.host, a.path): a for a in server.asked}
    for record in found:
        if record.rec_type != "request":
            continue
        host, path = key_of(target(record))
        assert block_of(record) == asked[(host, path)].head  # the request as the server read it
        assert block_of(record).startswith(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode())
        assert record.rec_headers.get_header("WARC-Concurrent-To") in by_id
    for result in results:
        assert result["error"] is None and result["warc"] is not None
        record, body = read_at(tmp_path, result["warc"])
        assert target(record) == result["final_url"]
        assert hashlib.sha256(body).hexdigest() == result["sha256"]


# -- bugs ------------------------------------------------------------------------------------


async def test_an_interim_response_split_across_reads_is_left_out(
    raw: Start, tmp_path: Path
) -> None:
    """``103 Early Hints`` whose first read holds less than ``HTTP/1.1 1xx``: the record
    must still hold only the final response (as when the 103 arrives in one piece)."""
    final = response(b"hints")

    def respond(asked: Asked) -> Answer:
        hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        return Answer([hints[:6], 0.05, hints[6:], 0.05, final])

    server = await raw(respond)
    [result] = await run([server.url("/hints")], tmp_path)
    assert result["status"] == 200 and result["warc"] is not None
    _record, block = read_at(tmp_path, result["warc"], parse=False)
    assert block == final


async def test_a_redirect_without_location_is_read_as_without_warc(
    raw: Start, tmp_path: Path
) -> None:
    """A 302 with no Location is the final response (aiohttp cannot follow it): its body
    is the result's body, with or without ``--warc``."""
    body = b"moved, but says not where"

    def respond(asked: Asked) -> Answer:
        return Answer([response(body, "302 Found")])

    server = await raw(respond)
    [result] = await run([server.url("/nowhere")], tmp_path, bodies=str(tmp_path / "b"))
    assert result["status"] == 302 and result["warc"] is not None
    _record, archived = read_at(tmp_path, result["warc"])
    assert archived == body  # the archive has it...
    assert result["bytes"] == len(body)  # ...but the fetcher found the body already read
    assert result["sha256"] == hashlib.sha256(body).hexdigest()


#: Redirects whose body does not arrive whole: aiohttp follows them without reading it.
BROKEN_REDIRECTS: dict[str, Answer] = {
    "stalled": Answer(
        [b"HTTP/1.1 302 Found\r\nLocation: /there\r\nContent-Length: 100\r\n\r\nabc", 30.0]
    ),
    "cut": Answer(
        [b"HTTP/1.1 302 Found\r\nLocation: /there\r\nContent-Length: 100\r\n\r\nabc", 0.05],
        close=True,
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN_REDIRECTS))
async def test_a_redirect_with_a_broken_body_is_followed_as_without_warc(
    raw: Start, tmp_path: Path, kind: str
) -> None:
    """A redirect whose body stalls or is cut short: without ``--warc``
    aiohttp follows it (it never reads a redirect's body); with ``--warc`` the fetch must
    not turn into a timeout or a failure."""

    def respond(asked: Asked) -> Answer:
        if asked.path == "/there":
            return Answer([response(b"arrived")])
        return BROKEN_REDIRECTS[kind]

    server = await raw(respond)
    timeouts = Timeouts(total_s=5, connect_s=2, read_s=1)
    retry = RetryPolicy(retries=0)
    without = shoal.Engine(
        network=shoal.Network(resolver=resolver()), timeouts=timeouts, retry=retry
    )
    async with without, without.stream([server.url("/moved")]) as results:
        [plain] = [result async for result in results]
    assert plain.status == 200 and plain.error is None
    [result] = await run([server.url("/moved")], tmp_path, timeouts=timeouts, retry=retry)
    assert result["error"] is None and result["status"] == 200
    # The redirect is archived as far as it came, and says so.
    [redirect, final] = [
        r for r in records(warc_files(tmp_path)[0], parse=False) if r.rec_type == "response"
    ]
    assert redirect.rec_headers.get_header("WARC-Truncated") == "disconnect"
    assert final.rec_headers.get_header("WARC-Truncated") is None


@pytest.mark.parametrize("method", ["HEAD", "GET"])
async def test_bodiless_responses_announcing_a_large_body_are_archived(
    raw: Start, tmp_path: Path, method: str
) -> None:
    """HEAD (and a 304) may announce the Content-Length of a body they do not carry: no
    body comes, so it cannot be over max_bytes."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 900000000\r\n\r\n"
    if method == "GET":
        head = head.replace(b"200 OK", b"304 Not Modified")

    def respond(asked: Asked) -> Answer:
        return Answer([head])

    server = await raw(respond)
    [result] = await run([{"url": server.url("/movie"), "method": method}], tmp_path)
    assert result["error"] is None
    assert result["warc"] is not None
    _record, block = read_at(tmp_path, result["warc"], parse=False)
    assert block == head


# -- odd responses ---------------------------------------------------------------------------

TEXT = b"The archive keeps what came over the wire.\n" * 30

#: path -> (steps, close after, decoded body); every one on a kept-alive connection unless
#: it closes.
ODD: dict[str, tuple[list[Step], bool, bytes]] = {
    "/empty": ([response(b"")], False, b""),
    "/no-content": ([b"HTTP/1.1 204 No Content\r\nX-Why: none\r\n\r\n"], False, b""),
    "/not-modified": (
        [b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Type: text/html\r\n\r\n'],
        False,
        b"",
    ),
    "/http10": (
        [b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", 0.02, TEXT[:100], 0.02, TEXT],
        True,
        TEXT[:100] + TEXT,
    ),
    "/deflate": (
        [response(zlib.compress(TEXT), headers=("Content-Encoding: deflate",))],
        False,
        TEXT,
    ),
    "/raw-deflate": (
        [response(zlib.compress(TEXT)[2:-4], headers=("Content-Encoding: deflate",))],
        False,
        TEXT,
    ),
    "/no-type": ([b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"], False, b"abc"),
    "/odd-type": (
        [response(b"<p>", headers=("content-type:   Text/HTML ; charset=UTF-8",))],
        False,
        b"<p>",
    ),
    "/bare-lf": (
        [b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nlf"],
        False,
        b"lf",
    ),
    # A whole response, one byte at a time, with trailers after the last chunk.
    "/trickle": (
        [
            bytes([byte])
            for byte in b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
            + chunked(b"trickled", 3, trailer=b"X-Sum: 8\r\n")
        ],
        False,
        b"trickled",
    ),
}


def _odd(asked: Asked) -> Answer:
    if asked.path == "/post":
        return Answer([response(b"posted " + asked.body)])
    steps, close, _ = ODD[asked.path.split("?")[0]]
    return Answer(steps, close)


async def test_odd_responses_are_archived_byte_for_byte(raw: Start, tmp_path: Path) -> None:
    server = await raw(_odd)
    items: list[Any] = [server.url(path) for path in ODD]
    items.append({"url": server.url("/empty?head"), "method": "HEAD"})
    items.append({"url": server.url("/post"), "method": "POST", "body": "x=1"})
    # One connection for all: the trailers and the bodiless responses must not leak into
    # the next request's record.
    results = await run(items, tmp_path, limits=Limits(concurrency=1, per_host=1))
    warcio_check(*warc_files(tmp_path))
    assert len(responses(tmp_path)) == len(items)
    for result in results:
        assert result["error"] is None, result
        host, path = key_of(result["url"])
        method = "POST" if path == "/post" else "HEAD" if path.endswith("?head") else "GET"
        [wrote] = server.sent[(host, method, path)]
        _record, block = read_at(tmp_path, result["warc"], parse=False)
        assert block == wrote, path
        plain = path.split("?")[0]
        expected = b"posted x=1" if plain == "/post" else ODD[plain][2]
        if method == "HEAD":
            expected = b""
        assert result["sha256"] == hashlib.sha256(expected).hexdigest(), path
        if plain != "/trickle":  # warcio cannot undo chunking that has trailers
            _record, body = read_at(tmp_path, result["warc"])
            assert body == expected, path


def index_lines(data: bytes) -> list[tuple[bytes, bytes, Any]]:
    return [
        (key, stamp, orjson.loads(rest))
        for key, stamp, rest in (line.split(b" ", 2) for line in data.splitlines())
    ]


async def cdxj_indexer(tmp_path: Path) -> list[tuple[bytes, bytes, Any]]:
    script = os.path.join(os.path.dirname(sys.executable), "cdxj-indexer")
    names = [f.name for f in warc_files(tmp_path)]
    process = await asyncio.create_subprocess_exec(
        script, *names, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return index_lines(out)


async def test_the_index_of_odd_responses_matches_cdxj_indexer(raw: Start, tmp_path: Path) -> None:
    server = await raw(_odd)
    items: list[Any] = [server.url(path) for path in ODD]
    items.append({"url": server.url("/empty?head"), "method": "HEAD"})
    items.append({"url": server.url("/post"), "method": "POST", "body": "x=1"})
    await run(items, tmp_path, limits=Limits(concurrency=4))
    ours = index_lines((tmp_path / "crawl.cdxj").read_bytes())
    theirs = await cdxj_indexer(tmp_path)
    assert sorted(ours, key=repr) == sorted(theirs, key=repr)


# -- requests as sent ------------------------------------------------------------------------


async def test_a_posted_body_is_resent_on_307_and_dropped_on_303(
    raw: Start, tmp_path: Path
) -> None:
    """Each request record holds the request actually sent on that hop: a 307 resends the
    POST and its body, a 303 turns it into a GET without one."""

    def respond(asked: Asked) -> Answer:
        if asked.path.startswith("/307"):
            return Answer([response(b"again", "307 Temporary Redirect", ("Location: /sink",))])
        if asked.path.startswith("/303"):
            location = f"http://b.test:{asked.host.split(':')[1]}/sink"
            return Answer([response(b"see", "303 See Other", (f"Location: {location}",))])
        return Answer([response(asked.method.encode() + b" " + asked.body)])

    server = await raw(respond)
    body = "field=" + "v" * 70_000  # over aiohttp's 64 KiB write size
    items = [
        {"url": server.url("/307"), "method": "POST", "body": body},
        {"url": server.url("/303"), "method": "POST", "body": body[:100]},
        # The server answers "100 Continue" first: left out of the response record.
        {
            "url": server.url("/ask"),
            "method": "PUT",
            "body": "abc",
            "headers": {"Expect": "100-continue"},
        },
    ]
    results = await run(items, tmp_path)
    assert [r["status"] for r in results] == [200, 200, 200]
    found = [r for f in warc_files(tmp_path) for r in records(f, parse=False)]
    requests = [r for r in found if r.rec_type == "request"]
    assert len(requests) == 5
    for record in found:
        if record.rec_type == "response":
            host, path = key_of(target(record))
            method = {"/ask": "PUT", "/307": "POST", "/303": "POST"}.get(path, "GET")
            if (host, path) == (f"a.test:{server.port}", "/sink"):
                method = "POST"
            assert [block_of(record)] == server.sent[(host, method, path)]
    read = {(a.host, a.path): a for a in server.asked}
    for record in requests:
        host, path = key_of(target(record))
        asked = read[(host, path)]
        assert block_of(record) == asked.head + asked.body, (host, path)
    sent = {key_of(target(r)): block_of(r) for r in requests}
    assert sent[(f"a.test:{server.port}", "/sink")].endswith(body.encode())
    assert sent[(f"b.test:{server.port}", "/sink")].startswith(b"GET /sink HTTP/1.1\r\n")


# -- retries, spooled responses, handlers, saved bodies ----------------------------------------

BIG = 300 * 1024  # over the size at which a response is spooled to a file


@pytest.mark.parametrize("budget", [32 * 1024 * 1024, 0])
async def test_retried_attempts_leave_nothing_behind_and_only_the_final_is_archived(
    raw: Start, tmp_path: Path, budget: int
) -> None:
    """Large attempts that fail (a 503, a connection cut mid-body, a stall) and handler
    rejections, each retried, then a large success (or a last 503, out of retries): one
    record per URL, holding the last attempt's bytes; no spool file left while the engine
    is still open; saved bodies match."""
    attempts: dict[str, int] = {}

    def respond(asked: Asked) -> Answer:
        kind, n = asked.path.split("/")[1:3]
        count = attempts[asked.path] = attempts.get(asked.path, 0) + 1
        body = unique(int(n) * 10 + count, BIG + int(n))
        if (count == 1 and kind == "flaky") or kind == "busy":
            return Answer([response(body, "503 Service Unavailable")])
        if count == 1 and kind == "cut":
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {2 * len(body)}\r\n\r\n".encode()
            return Answer([head + body, 0.05], close=True)
        if count == 1 and kind == "stall":
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {2 * len(body)}\r\n\r\n".encode()
            return Answer([head + body, 5.0], close=True)
        return Answer([response(body, headers=(f"X-Attempt: {count}",))])

    rejected: set[str] = set()

    async def handler(result: shoal.Result) -> Any:
        if "/reject/" in result.url and result.url not in rejected:
            rejected.add(result.url)
            raise shoal.Rejected("not yet", retry=True)
        if "/refuse/" in result.url:
            raise shoal.Rejected("never")
        return {"size": result.bytes}

    server = await raw(respond)
    kinds = ["flaky", "cut", "stall", "reject", "refuse", "fine", "busy"]
    urls = [server.url(f"/{kinds[n % len(kinds)]}/{n}") for n in range(42)]
    engine = shoal.Engine(
        network=shoal.Network(resolver=resolver()),
        outputs=Outputs(warc=str(tmp_path / "crawl"), bodies=str(tmp_path / "bodies")),
        handler=handler,
        limits=Limits(concurrency=12),
        timeouts=Timeouts(total_s=10, connect_s=2, read_s=0.5),
        retry=RetryPolicy(retries=2, backoff_base_s=0.001),
    )
    engine._artifacts.budget.limit = budget
    output = tmp_path / "out.jsonl"
    async with engine:
        await engine.run(urls, journal=str(tmp_path / "job"), output=str(output))
        own = tmp_path / "crawl.partial" / f"{socket.gethostname()}-{os.getpid()}"
        assert list(own.iterdir()) == []  # every spool file was archived or removed
        assert engine._artifacts.budget.held == 0
    assert not (tmp_path / "crawl.partial").exists()
    results = read_records(output)
    warcio_check(*warc_files(tmp_path))
    archived = responses(tmp_path)
    assert sorted(target(r) for r in archived) == sorted(urls)
    for result in results:
        kind = result["url"].split("/")[3]
        expected_attempts = {"fine": 1, "refuse": 1, "busy": 3}.get(kind, 2)
        assert result["attempts"] == expected_attempts, result
        assert result["status"] == (503 if kind == "busy" else 200)  # out of retries: kept
        if kind == "refuse":
            assert result["error"]["kind"] == "handler"
        else:
            assert result["error"] is None, result
        host, path = key_of(result["url"])
        wrote = server.sent[(host, "GET", path)]
        assert len(wrote) == expected_attempts
        _record, block = read_at(tmp_path, result["warc"], parse=False)
        assert block == wrote[-1]
        body = (tmp_path / "bodies" / result["body_path"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == result["sha256"]
        assert block.endswith(body)


async def test_a_request_through_a_proxy_is_archived_as_sent(raw: Start, tmp_path: Path) -> None:
    """Through a plain HTTP proxy aiohttp sends the absolute URL in the request line
    (``GET http://a.test:…/x HTTP/1.1``): the request record must hold that line."""

    def respond(asked: Asked) -> Answer:
        return Answer([response(b"via the proxy")])

    proxy = await raw(respond)  # answers as the proxy, without going on to the origin
    url = proxy.url("/x?y=1")
    [result] = await run([url], tmp_path, network=Network(proxy=f"http://127.0.0.1:{proxy.port}"))
    assert result["status"] == 200 and result["warc"] is not None
    [asked] = proxy.asked
    assert asked.head.startswith(f"GET {url} HTTP/1.1\r\n".encode())
    [request] = [
        r for r in records(warc_files(tmp_path)[0], parse=False) if r.rec_type == "request"
    ]
    assert block_of(request) == asked.head


# -- connections that go wrong -----------------------------------------------------------------


async def test_robots_and_dropped_kept_alive_connections_leave_only_final_exchanges(
    raw: Start, tmp_path: Path
) -> None:
    """robots.txt is fetched on the same connections as the archived requests, but is not
    archived; a kept-alive connection the server drops (before answering, or halfway
    through the status line) fails that attempt, whose retry is the only one archived."""
    dropped: set[str] = set()
    served: dict[int, int] = {}

    def respond(asked: Asked) -> Answer:
        if asked.path == "/robots.txt":
            return Answer([response(b"User-agent: *\nDisallow: /private\n")])
        served[asked.connection] = served.get(asked.connection, 0) + 1
        n = int(asked.path.rsplit("/", 1)[1])
        if served[asked.connection] > 1 and asked.path not in dropped and n % 2:
            dropped.add(asked.path)
            return Answer([b"HTTP/1.1 200 OK\r\nContent-Le"] if n % 4 == 1 else [], close=True)
        return Answer([response(unique(n, 100 + n))])

    server = await raw(respond)
    urls = [server.url(f"/page/{n}") for n in range(24)] + [server.url("/private/1")]
    results = await run(
        urls,
        tmp_path,
        limits=Limits(concurrency=2, per_host=2),
        politeness=shoal.Politeness(respect_robots=True),
    )
    by_url = {r["url"]: r for r in results}
    assert by_url[server.url("/private/1")]["error"]["kind"] == "robots"
    assert by_url[server.url("/private/1")]["warc"] is None
    assert dropped, "some kept-alive connections should have been dropped"
    archived = responses(tmp_path)
    assert sorted(target(r) for r in archived) == sorted(urls[:-1])
    warcio_check(*warc_files(tmp_path))
    for record in archived:
        host, path = key_of(target(record))
        wrote = server.sent[(host, "GET", path)]
        assert len(wrote) == (2 if path in dropped else 1)
        assert block_of(record) == wrote[-1]
        assert by_url[target(record)]["attempts"] == len(wrote)


# -- interrupted and resumed -------------------------------------------------------------------


async def test_runs_cut_short_then_resumed_archive_every_exchange_once(
    raw: Start, tmp_path: Path
) -> None:
    """A job left early (its tasks cancelled mid-write) three times, then finished, with
    redirects, retries, spooled responses and files rolling over: every exchange of every
    final attempt is archived once, and every record's location (written by any run) is
    still right."""
    attempts: dict[str, int] = {}

    def respond(asked: Asked) -> Answer:
        n = int(asked.path.rsplit("/", 1)[1])
        count = attempts[asked.path] = attempts.get(asked.path, 0) + 1
        if asked.path.startswith("/go/") and n % 3 == 0:
            return Answer([response(b"hop", "302 Found", (f"Location: /to/{n}",))])
        if n % 5 == 0 and count == 1:
            return Answer([response(unique(n, BIG), "503 Busy")])
        size = BIG + n if n % 4 == 0 else 200 + n
        return Answer([0.005 * (n % 7), response(unique(n * 7 + count, size))])

    server = await raw(respond)
    urls = [server.url(f"/go/{n}", host="ab"[n % 2] + ".test") for n in range(90)]
    journal, output = str(tmp_path / "job"), str(tmp_path / "out.jsonl")
    options: dict[str, Any] = {
        "network": shoal.Network(resolver=resolver()),
        "outputs": Outputs(warc=str(tmp_path / "crawl"), warc_max_size=8_000),
        "limits": Limits(concurrency=16),
        "retry": RetryPolicy(retries=2, backoff_base_s=0.001),
    }
    for stop_after in (7, 15, 20):
        engine = shoal.Engine(**options)
        seen = 0
        async with engine, engine.stream(urls, journal=journal, output=output) as stream:
            async for _ in stream:
                seen += 1
                if seen == stop_after:
                    break
    engine = shoal.Engine(**options)
    async with engine:
        await engine.run(urls, journal=journal, output=output)
    results = read_records(Path(output))
    assert sorted(r["url"] for r in results) == sorted(urls)
    files = warc_files(tmp_path)
    assert len(files) > 5
    warcio_check(*files)
    archived = responses(tmp_path)
    finals = {r["final_url"] for r in results}
    hops = {r["url"] for r in results if r["redirects"]}
    assert sorted(target(r) for r in archived) == sorted(finals | hops)
    for result in results:
        record, block = read_at(tmp_path, result["warc"], parse=False)
        assert target(record) == result["final_url"]
        host, path = key_of(result["final_url"])
        assert block == server.sent[(host, "GET", path)][-1]
    index = index_lines((tmp_path / "crawl.cdxj").read_bytes())
    assert sorted(f["url"] for _, _, f in index) == sorted(finals | hops)
