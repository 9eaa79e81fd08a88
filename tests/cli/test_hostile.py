"""Hostile and broken input, end to end through the command line.

A file that mixes good URLs with every kind of junk — binary data, NUL bytes, a 10 MiB line,
invalid UTF-8, malformed JSON, URLs with spaces, IPv6 literals, IDN hosts, other schemes,
missing hosts, absurd ports and seeded random bytes — must give exactly one record per line
that is neither blank nor a comment: the good URLs fetched, every bad line an error record of
kind ``invalid_url`` or ``unsupported_scheme`` naming its line. The run goes on and ends with
exit code 1 (some failed), never with a crash.

The expected outcome of each line is written down here, not computed by shoal's parser. The
one rule taken from the README is what "skipped" means: a line that, stripped of whitespace,
is empty or starts with ``#``. Lines are split on ``\\n`` only (a lone ``\\r`` is part of a
line, a ``\\r\\n`` ending is whitespace).

The tests at the end pin what were bugs this fuzzing found (now fixed).
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from shoal.job import Entry
from shoal.result import ErrorKind
from shoal.sources import FileSource
from shoal.sources.lines import MAX_LINE_BYTES
from shoal.sources.source import Position
from tests.command import RESOLVE, Finished, lines, shoal
from tests.helpers import read_records
from tests.servers import Misbehaving

SEED = 0x5140A1
MIB = 1024 * 1024
INVALID = "invalid_url"
UNSUPPORTED = "unsupported_scheme"
#: A line that is not a request, but which of the two kinds is not pinned (random bytes).
BAD = "bad"
OK = "ok"
BAD_KINDS = {INVALID, UNSUPPORTED}
QUIET = ("--progress", "off", "--retries", "0")


# -- an IPv6 loopback server ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loopback6:
    """A tiny server on ``[::1]`` (the shared test server listens on 127.0.0.1 only)."""

    port: int
    hits: Counter[str]


@pytest.fixture
async def ipv6_server() -> AsyncIterator[Loopback6 | None]:
    """A server on ``::1``, or ``None`` when this machine has no IPv6 loopback."""
    hits: Counter[str] = Counter()

    async def answer(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(text="six")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        started = socket.has_ipv6
        if started:
            try:
                await web.TCPSite(runner, "::1", 0).start()
            except OSError:
                started = False
        yield Loopback6(runner.addresses[0][1], hits) if started else None
    finally:
        await runner.cleanup()


# -- the hostile input ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One input line and what must come of it.

    ``expect`` is ``None`` (skipped), ``OK`` (fetched; the server counts it under ``path``),
    ``INVALID`` or ``UNSUPPORTED`` (that error kind), or ``BAD`` (either error kind).
    """

    raw: bytes
    expect: str | None
    end: bytes = b"\n"
    path: str | None = None
    six: bool = False  # fetched from the IPv6 server


def skipped(raw: bytes) -> bool:
    """The README's rule: blank, or starting with ``#`` once leading whitespace is gone."""
    text = raw.decode("utf-8", "replace").strip()
    return not text or text.startswith("#")


def valid_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def random_lines(rng: random.Random, size: int) -> list[Line]:
    """Random bytes cut at their own newlines: each piece is one line (a piece ending in
    ``\\r`` is a CRLF line)."""
    pieces = rng.randbytes(size).split(b"\n")
    return [Line(piece, None if skipped(piece) else BAD) for piece in pieces]


def good(server: Misbehaving, key: str, host: str = "a.test", query: str = "") -> Line:
    """A URL the test server answers with 200, counted under its own path."""
    return Line(
        server.url(f"/flaky/{key}?fail=0{query}", host=host).encode(), OK, path=f"/flaky/{key}"
    )


def hostile_lines(server: Misbehaving, six: Loopback6 | None) -> list[Line]:
    rng = random.Random(SEED)
    port = server.port
    at = f"http://a.test:{port}"
    url_json = orjson.dumps({"url": server.url("/flaky/json?fail=0"), "meta": {"n": [1, None]}})
    idn_json = orjson.dumps({"url": server.url("/flaky/idn-json?fail=0", host="straße.test")})
    nested = b'{"url": "http://a.test/", "meta": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    long_random = b"\xfe" + rng.randbytes(MIB + 10).replace(b"\n", b"n")
    result: list[Line] = [
        Line(b"# a hostile input file", None),
        good(server, "first"),
        # -- blank lines and comments: skipped, but they count as lines
        Line(b"", None),
        Line(b"", None, end=b"\r\n"),
        Line(b"   \t  ", None),
        Line(b"\x0b\x0c", None),
        Line("\u3000".encode(), None),
        Line(b"   # an indented comment", None),
        Line(b"#http://a.test/commented-out", None),
        Line("# Grüße, valid UTF-8 in a comment".encode(), None),
        Line(b"#", None),
        # -- good lines in odd shapes
        Line(server.url("/flaky/crlf?fail=0").encode(), OK, end=b"\r\n", path="/flaky/crlf"),
        Line(
            b"  \t" + server.url("/flaky/padded?fail=0").encode() + b"  ", OK, path="/flaky/padded"
        ),
        good(server, "with space"),
        good(server, "query", query="&q=a b c"),
        good(server, "idn", host="bücher.test"),
        good(server, "snowman", host="☃.test"),
        Line(f"HTTP://A.TEST:{port}/flaky/upper?fail=0".encode(), OK, path="/flaky/upper"),
        Line(url_json, OK, path="/flaky/json"),
        Line(idn_json, OK, path="/flaky/idn-json"),
        # -- binary junk and NUL bytes
        Line(b"\x00", INVALID),
        Line(b"\x00" * 64, INVALID),
        Line(server.url("/flaky/nul?fail=0").encode() + b"\x00", INVALID),
        Line(f"{at}/\x00x".encode(), INVALID),
        Line(b"\x89PNG\r\x1a\x00\x00\x00\rIHDR\x00\x00\x01\x00", INVALID),
        Line(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00", INVALID),
        Line(b"\x1b[31mhttp://a.test/\x1b[0m", INVALID),
        *random_lines(rng, 12_000),
        # -- invalid UTF-8
        Line(server.url("/flaky/latin1-\xe9?fail=0").encode("latin-1"), INVALID),
        Line(b"\xc3\x28", INVALID),
        Line(b"\xed\xa0\x80", INVALID),  # an encoded surrogate
        Line(b"\xc0\xaf", INVALID),  # an overlong encoding
        Line(b"\xf8\x88\x80\x80\x80", INVALID),
        # -- malformed or unusable JSON
        Line(b"{", INVALID),
        Line(b'{"url": "http://a.test/"', INVALID),
        Line(b"{'url': 'http://a.test/'}", INVALID),
        Line(b'{"url": 1}', INVALID),
        Line(b"{}", INVALID),
        Line(b'{"url": ""}', INVALID),
        Line(b'{"url": "http://a.test/", "surprise": 1}', INVALID),
        Line(b'{"url": "http://a.test/", "headers": {"X": "a\\r\\nInjected: yes"}}', INVALID),
        Line(b'{"url": "http://a.test/", "id": {"nested": true}}', INVALID),
        Line(nested, INVALID),
        Line(b"[1, 2, 3]", INVALID),
        Line(b'"http://a.test/"', INVALID),
        # -- spaces and control characters where they cannot be
        Line(b"http://exa mple.test/", INVALID),
        Line(b"http:// a.test/", INVALID),
        Line(f"{at}/\tx".encode(), INVALID),
        Line("http://ü\u200b.test/".encode(), INVALID),
        # -- other schemes
        Line(b"file:///etc/passwd", UNSUPPORTED),
        Line(b"ftp://a.test/file.txt", UNSUPPORTED),
        Line(b"javascript:alert(1)", UNSUPPORTED),
        Line(b"JaVaScRiPt:alert(document.cookie)", UNSUPPORTED),
        Line(b"data:text/html,<script>alert(1)</script>", UNSUPPORTED),
        Line(b"mailto:someone@a.test", UNSUPPORTED),
        Line(b"gopher://a.test/", UNSUPPORTED),
        Line(b"ws://a.test/socket", UNSUPPORTED),
        Line(b"view-source:http://a.test/", UNSUPPORTED),
        Line(b'{"url": "ftp://a.test/f", "id": "x"}', UNSUPPORTED),
        # -- missing hosts and schemes
        Line(b"http:///path", INVALID),
        Line(b"http://", INVALID),
        Line(b"http:", INVALID),
        Line(b"https://:443/", INVALID),
        Line(b"http://@/", INVALID),
        Line(b"http://user:pass@/", INVALID),
        Line(b"http://?q=1", INVALID),
        Line(b"//a.test/path", INVALID),
        Line(b"a.test/path", INVALID),
        Line(b"\\\\server\\share", INVALID),
        # -- absurd ports
        Line(b"http://a.test:99999/", INVALID),
        Line(b"http://a.test:65536/", INVALID),
        Line(b"http://a.test:-1/", INVALID),
        Line(b"http://a.test:0/", INVALID),
        Line(b"http://a.test:port/", INVALID),
        Line(b"http://a.test:1e3/", INVALID),
        Line(b"http://a.test:80:80/", INVALID),
        Line(b"http://a.test:" + b"9" * 60 + b"/", INVALID),
        Line(f"http://bücher.test:{port + 70000}/".encode(), INVALID),
        # -- broken IPv6 literals
        Line(b"http://[::1/x", INVALID),
        Line(b"http://[::1]:99999/", INVALID),
        Line(b"http://[]/", INVALID),
        Line(b"http://[::1]x/", INVALID),
        Line(b"http://[127.0.0.1]/", INVALID),
        # -- broken IDN hosts and host names
        Line(("http://ü" + "x" * 70 + ".test/").encode(), INVALID),
        Line("http://ü..test/".encode(), INVALID),
        Line(b"http://xn--.test/", INVALID),
        Line(b"http://-bad-.test/", INVALID),
        Line(b"http://" + b"a" * 64 + b".test/", INVALID),
        # -- long lines: a long URL, then lines far over the line limit
        Line(b"http://a.test/" + b"x" * 20_000, INVALID),
        Line(b"http://a.test/" + b"A" * (10 * MIB), INVALID),
        good(server, "after-10-mib"),
        Line(long_random, INVALID),
        *random_lines(rng, 12_000),
        good(server, "near-the-end"),
    ]
    if six is not None:
        result.append(Line(f"http://[::1]:{six.port}/six".encode(), OK, path="/six", six=True))
    # The last line has no newline.
    result.append(Line(server.url("/flaky/last?fail=0").encode(), OK, end=b"", path="/flaky/last"))
    return result


def content(entries: list[Line]) -> bytes:
    return b"".join(line.raw + line.end for line in entries)


def expected_by_number(entries: list[Line]) -> dict[int, Line]:
    """The lines that must give a record, by line number (counting from 1, every line)."""
    return {number: line for number, line in enumerate(entries, 1) if line.expect is not None}


def check_records(
    records: list[dict[str, Any]],
    entries: list[Line],
    server: Misbehaving,
    six: Loopback6 | None,
) -> None:
    expected = expected_by_number(entries)
    numbers = [record["line"] for record in records]
    assert len(numbers) == len(set(numbers)), "a line gave more than one record"
    assert sorted(numbers) == sorted(expected), "records do not match the non-blank lines"
    for record in records:
        number = record["line"]
        line = expected[number]
        where = f"line {number}: {line.raw[:80]!r} -> {record}"
        if line.expect == OK:
            assert record["error"] is None, where
            assert record["status"] == 200, where
            assert record["attempts"] == 1, where
            text = line.raw.decode().strip()
            url = orjson.loads(text)["url"] if text.startswith("{") else text
            assert record["url"] == url, where
            continue
        error = record["error"]
        assert error is not None, where
        if line.expect == BAD:
            assert error["kind"] in BAD_KINDS, where
        else:
            assert error["kind"] == line.expect, where
        assert error["message"].startswith(f"line {number}: "), where
        assert record["attempts"] == 0, where
        assert record["status"] is None, where
    # Every good URL reached its server exactly once, and nothing else was fetched.
    fetched = [line.path for line in entries if line.expect == OK and not line.six]
    assert Counter(server.log.paths) == Counter(fetched)
    if six is not None:
        assert six.hits == Counter({"/six": 1})


def summary_counts(entries: list[Line]) -> str:
    expected = expected_by_number(entries).values()
    ok = sum(1 for line in expected if line.expect == OK)
    failed = sum(1 for line in expected if line.expect != OK)
    return f"{ok:,} ok, {failed:,} failed"


def assert_no_crash(done: Finished) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert "internal error" not in done.stderr, done.stderr


def test_the_hostile_input_covers_what_the_issue_lists() -> None:
    """A guard on the input itself: the mix holds every kind of junk, and enough of it."""
    unstarted = Misbehaving()
    unstarted.port = 8080  # only used to spell URLs here
    entries = hostile_lines(unstarted, None)
    data = content(entries)
    assert b"\x00" in data and b"\r\n" in data and not valid_utf8(data)
    assert max(len(line.raw) for line in entries) > 10 * MIB
    kinds = Counter(line.expect for line in entries)
    assert kinds[OK] >= 10 and kinds[INVALID] >= 50 and kinds[UNSUPPORTED] >= 10
    assert kinds[BAD] >= 40  # random lines that must be errors
    assert kinds[None] >= 10  # skipped lines, random ones among them
    blank = [line for line in entries if line.expect is None and b"#" not in line.raw]
    assert len(blank) >= 5


async def test_hostile_file_gives_one_record_per_line_and_exit_1(
    server: Misbehaving, ipv6_server: Loopback6 | None, tmp_path: Path
) -> None:
    entries = hostile_lines(server, ipv6_server)
    source, output = tmp_path / "hostile.txt", tmp_path / "out.jsonl"
    source.write_bytes(content(entries))
    args = ("fetch", str(source), "-o", str(output), *RESOLVE, *QUIET)
    done = await shoal(*args, within_s=60)
    assert done.code == 1, done.stderr
    assert_no_crash(done)
    assert done.stdout == b""
    check_records(read_records(output), entries, server, ipv6_server)
    assert summary_counts(entries) in done.stderr, done.stderr

    # The journal took every odd line: running again resumes to a no-op.
    written = output.read_bytes()
    hits = server.log.total
    again = await shoal(*args, within_s=60)
    assert again.code == 1, again.stderr
    assert_no_crash(again)
    assert "0 this run" in again.stderr
    assert output.read_bytes() == written
    assert server.log.total == hits


async def test_hostile_stdin_gives_one_record_per_line_and_exit_1(
    server: Misbehaving, ipv6_server: Loopback6 | None
) -> None:
    entries = hostile_lines(server, ipv6_server)
    done = await shoal("fetch", *RESOLVE, *QUIET, stdin=content(entries), within_s=60)
    assert done.code == 1, done.stderr
    assert_no_crash(done)
    check_records(done.records(), entries, server, ipv6_server)
    assert summary_counts(entries) in done.stderr, done.stderr


# -- FileSource over arbitrary bytes ----------------------------------------------------------

_PIECES = st.sampled_from(
    [
        b"\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"#",
        b" ",
        b"\t",
        b"\x0b",
        b"\x00",
        b"\xff",
        b"\xc3",
        b"{",
        b"}",
        b'"',
        b'{"url": "',
        b"http://a.test/",
        b"ftp://a.test/",
        "ü".encode(),
        "\u3000".encode(),
    ]
)
_BYTES = st.lists(st.one_of(st.binary(max_size=24), _PIECES), max_size=40).map(b"".join)


def split_lines(data: bytes) -> list[bytes]:
    """Lines as a file reader sees them: cut after each ``\\n``, the last one maybe without."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    return pieces


async def read_all(source: FileSource, limit: int) -> list[Entry]:
    entries: list[Entry] = []
    for _ in range(10_000):
        batch = await source.read_batch(limit)
        if batch is None:
            return entries
        assert len(batch) <= limit
        entries.extend(batch)
    raise AssertionError("the source never reached its end")


def describe(entry: Entry) -> tuple[int | None, str, str | None, bytes]:
    return (
        entry.line,
        entry.request.url,
        None if entry.error is None else entry.error.message,
        entry.key,
    )


@settings(
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=_BYTES, limit=st.integers(1, 6), stop_after=st.integers(0, 3))
async def test_file_source_reads_arbitrary_bytes(
    tmp_path: Path, data: bytes, limit: int, stop_after: int
) -> None:
    """One entry per line that is neither blank nor a comment, in order, with its line
    number; never an exception; and a second reader resumed at any batch boundary reads
    exactly what the first one read after it."""
    path = tmp_path / "fuzz.txt"
    path.write_bytes(data)
    raw_lines = split_lines(data)
    required = [n for n, raw in enumerate(raw_lines, 1) if not skipped(raw)]

    first = FileSource(str(path))
    try:
        head: list[Entry] = []
        for _ in range(stop_after):
            batch = await first.read_batch(limit)
            if batch is None:
                break
            assert len(batch) <= limit
            head.extend(batch)
        saved = first.position
        tail = await read_all(first, limit)
        assert first.position == Position(len(raw_lines), len(data))
        assert await first.read_batch(limit) is None  # and it stays at the end
    finally:
        await first.aclose()

    entries = head + tail
    numbers = [entry.line or 0 for entry in entries]
    assert all(entry.line is not None for entry in entries)
    assert numbers == sorted(set(numbers)), "line numbers must increase"
    assert numbers == required
    for entry in entries:
        if entry.error is None:
            assert entry.target is not None and entry.target.scheme in {"http", "https"}
        else:
            assert entry.error.kind in BAD_KINDS
            assert entry.error.message.startswith(f"line {entry.line}: ")

    second = FileSource(str(path))
    try:
        await second.skip_to(saved)
        resumed = await read_all(second, limit)
    finally:
        await second.aclose()
    assert [describe(entry) for entry in resumed] == [describe(entry) for entry in tail]


# -- bugs found ---------------------------------------------------------------------------------


async def _one_bad_line(server: Misbehaving, bad: str | bytes) -> tuple[Finished, dict[int, Any]]:
    """Run ``good, bad, good`` from stdin; the records by line number."""
    raw = bad.encode() if isinstance(bad, str) else bad
    data = lines(server.url("/flaky/before?fail=0")) + raw + b"\n"
    data += lines(server.url("/flaky/after?fail=0"))
    done = await shoal("fetch", *RESOLVE, *QUIET, stdin=data)
    assert_no_crash(done)
    return done, {record["line"]: record for record in done.records()}


def _assert_rejected_as_input(done: Finished, records: dict[int, Any], server: Misbehaving) -> None:
    assert done.code == 1, done.stderr
    assert sorted(records) == [1, 2, 3]
    bad = records[2]
    assert bad["error"] is not None, bad
    assert bad["error"]["kind"] == INVALID, bad
    assert bad["error"]["message"].startswith("line 2: "), bad
    assert bad["attempts"] == 0, bad
    assert records[1]["status"] == records[3]["status"] == 200
    assert Counter(server.log.paths) == Counter({"/flaky/before": 1, "/flaky/after": 1})


@pytest.mark.parametrize(
    "bad",
    [
        "http://[:::1]/",
        "http://[1::2::3]/",
        "http://[::g]/",
        "http://[1:2:3:4:5:6:7:8:9]/",
        '{"url": "http://[a:b:c]/", "id": "json"}',
    ],
)
async def test_malformed_ipv6_literal_is_an_error_record_not_a_crash(
    server: Misbehaving, bad: str
) -> None:
    done, records = await _one_bad_line(server, bad)
    _assert_rejected_as_input(done, records, server)


@pytest.mark.parametrize(
    "form", ["http://[v1.a.test]:{port}/flaky/future?fail=0", "http://[1:2]/", "http://[:1]/"]
)
async def test_bracketed_host_that_is_not_ipv6_is_invalid(server: Misbehaving, form: str) -> None:
    done, records = await _one_bad_line(server, form.format(port=server.port))
    _assert_rejected_as_input(done, records, server)


def _arabic_indic(number: int) -> str:
    return "".join(chr(0x0660 + int(digit)) for digit in str(number))


@pytest.mark.parametrize("style", ["plus", "underscore", "space", "arabic-indic"])
async def test_malformed_port_is_invalid(server: Misbehaving, style: str) -> None:
    port = str(server.port)
    spelled = {
        "plus": "+" + port,
        "underscore": port[0] + "_" + port[1:],
        "space": " " + port,
        "arabic-indic": _arabic_indic(server.port),
    }[style]
    done, records = await _one_bad_line(server, f"http://a.test:{spelled}/flaky/port?fail=0")
    _assert_rejected_as_input(done, records, server)


async def test_comment_with_invalid_utf8_is_skipped(server: Misbehaving) -> None:
    data = b"# caf\xe9 cr\xe8me, a Latin-1 comment\n" + lines(server.url("/flaky/one?fail=0"))
    done = await shoal("fetch", *RESOLVE, *QUIET, stdin=data)
    assert_no_crash(done)
    assert done.code == 0, done.stderr
    assert [record["line"] for record in done.records()] == [2]


@pytest.mark.parametrize("filler", [b"# ", b" "])
async def test_overlong_comment_or_blank_line_is_skipped(
    server: Misbehaving, filler: bytes
) -> None:
    long_line = filler + b" " * (MAX_LINE_BYTES + 100) + filler
    data = long_line + b"\n" + lines(server.url("/flaky/one?fail=0"))
    done = await shoal("fetch", *RESOLVE, *QUIET, stdin=data)
    assert_no_crash(done)
    assert done.code == 0, done.stderr
    assert [record["line"] for record in done.records()] == [2]


_BRACKETED = st.text(alphabet="0123456789abcdefgv:.%", min_size=0, max_size=12)


@settings(
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(hosts=st.lists(_BRACKETED, min_size=1, max_size=8))
@example(hosts=["::1", ":::1"])
async def test_bracketed_hosts_never_raise_and_valid_ones_are_ipv6(
    tmp_path: Path, hosts: list[str]
) -> None:
    path = tmp_path / "brackets.txt"
    path.write_text("".join(f"http://[{host}]/\n" for host in hosts))
    source = FileSource(str(path))
    try:
        entries = await read_all(source, 4)
    finally:
        await source.aclose()
    assert [entry.line for entry in entries] == list(range(1, len(hosts) + 1))
    for entry in entries:
        if entry.error is not None:
            assert entry.error.kind is ErrorKind.INVALID_URL
            continue
        assert entry.target is not None
        host = entry.target.raw_host
        assert host is not None
        assert ipaddress.ip_address(host.partition("%")[0]).version == 6
        assert URL(str(entry.target)).raw_host == host  # the checked URL survives a round trip


@pytest.mark.parametrize(
    "line",
    [
        '{"nourl": 1}',
        '{"url": 5,  "id": "x"}',
        '{ "href" : "http://a.test/",\t"n": [1, 2.50, null, true] }',
        '{"meta": {"café": "ü"}}',
    ],
)
async def test_json_line_that_is_not_a_request_keeps_its_own_text(
    server: Misbehaving, line: str
) -> None:
    done, records = await _one_bad_line(server, line)
    _assert_rejected_as_input(done, records, server)
    assert records[2]["url"] == line  # exactly as written: not Python's text of the object
