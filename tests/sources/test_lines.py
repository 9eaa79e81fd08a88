"""Parsing input lines, and reading them lazily from a file with resume by byte offset."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from shoal.job import Entry
from shoal.request import Request
from shoal.result import ErrorKind
from shoal.sources.lines import MAX_LINE_BYTES, FileSource, parse_line
from shoal.sources.source import Position

BAD_KINDS = {ErrorKind.INVALID_URL, ErrorKind.UNSUPPORTED_SCHEME}


def parsed(raw: bytes, line: int = 7) -> Entry:
    entry = parse_line(raw, line)
    assert entry is not None
    return entry


def assert_bad(entry: Entry, kind: ErrorKind, line: int, *fragments: str) -> None:
    """One error entry: the given kind, no target, a message naming the line."""
    assert entry.error is not None, entry
    assert entry.error.kind is kind
    assert entry.target is None
    assert entry.line == line
    assert entry.error.message.startswith(f"line {line}: "), entry.error.message
    for fragment in fragments:
        assert fragment in entry.error.message
    # Invalid entries are keyed by position, so two bad lines never deduplicate each other.
    assert entry.key == b"invalid\0" + str(line).encode()


# -- parse_line: what is skipped --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"\n", b"   \t  \r\n", b"# a comment", b"   # indented comment\n", b"#http://a.test/"],
)
def test_blank_lines_and_comments_are_skipped(raw: bytes) -> None:
    assert parse_line(raw, 1) is None


# -- parse_line: bare URLs --------------------------------------------------------------------


def test_bare_url() -> None:
    entry = parsed(b"http://a.test/path?q=1\n", line=3)
    assert entry.error is None
    assert entry.request == Request("http://a.test/path?q=1")
    assert entry.target == URL("http://a.test/path?q=1")
    assert entry.line == 3
    assert len(entry.key) == 16


def test_bare_url_is_stripped_of_surrounding_whitespace_and_crlf() -> None:
    entry = parsed(b"  https://a.test/x  \r\n")
    assert entry.error is None
    assert entry.request.url == "https://a.test/x"
    assert entry.key == parsed(b"https://a.test/x").key


def test_bare_url_takes_the_default_method() -> None:
    entry = parse_line(b"http://a.test/", 1, default_method="HEAD")
    assert entry is not None and entry.error is None
    assert entry.request.method == "HEAD"
    # The method is part of the key: HEAD and GET of one URL are two requests.
    assert entry.key != parsed(b"http://a.test/").key


def test_space_inside_the_path_is_percent_encoded() -> None:
    entry = parsed(b"http://a.test/a b")
    assert entry.error is None
    assert entry.target is not None
    assert entry.target.raw_path == "/a%20b"
    assert entry.key == parsed(b"http://a.test/a%20b").key


def test_space_inside_the_host_is_invalid() -> None:
    assert_bad(parsed(b"http://exa mple.test/", 4), ErrorKind.INVALID_URL, 4, "host")


def test_ipv6_literal() -> None:
    entry = parsed(b"http://[::1]:8080/x")
    assert entry.error is None
    assert entry.target is not None
    assert entry.target.raw_host == "::1"
    assert entry.target.port == 8080


def test_unclosed_ipv6_literal_is_invalid() -> None:
    assert_bad(parsed(b"http://[::1/x", 2), ErrorKind.INVALID_URL, 2)


def test_idn_host_is_converted_to_punycode() -> None:
    entry = parsed("http://bücher.example/".encode())
    assert entry.error is None
    assert entry.target is not None
    assert entry.target.raw_host == "xn--bcher-kva.example"
    # The Unicode and the punycode spellings are one request.
    assert entry.key == parsed(b"http://xn--bcher-kva.example/").key


def test_fragment_is_dropped() -> None:
    entry = parsed(b"http://a.test/page#section")
    assert entry.target == URL("http://a.test/page")
    assert entry.key == parsed(b"http://a.test/page").key


@pytest.mark.parametrize(
    ("raw", "scheme"),
    [
        (b"file:///etc/passwd", "file"),
        (b"ftp://a.test/file.txt", "ftp"),
        (b"javascript:alert(1)", "javascript"),
        (b"mailto:someone@a.test", "mailto"),
        (b"ws://a.test/socket", "ws"),
    ],
)
def test_other_schemes_are_unsupported(raw: bytes, scheme: str) -> None:
    entry = parsed(raw, 9)
    assert_bad(entry, ErrorKind.UNSUPPORTED_SCHEME, 9, repr(scheme))
    assert entry.request.url == raw.decode()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"http:///path", "no host"),
        (b"http://", ""),
        (b"a.test/path", "no scheme"),
        (b"//a.test/path", "no scheme"),
        (b"http://a.test:99999/", "ort"),
        (b"http://a.test:65536/", "ort"),
        (b"http://a.test:-1/", "ort"),
        (b"http://a.test:0/", "port 0"),
        (b"http://a.test:port/", "port"),
        (b"http://-bad-.test/", "host"),
        (b"http://a.test/\x00x", "control"),
        (b"http://a.test/\tx", "whitespace"),
        (b"http://a.test/" + b"x" * 20_000, "longer than"),
    ],
)
def test_bad_urls_are_invalid(raw: bytes, fragment: str) -> None:
    assert_bad(parsed(raw, 12), ErrorKind.INVALID_URL, 12, fragment)


def test_highest_port_is_accepted() -> None:
    entry = parsed(b"http://a.test:65535/")
    assert entry.error is None
    assert entry.target is not None and entry.target.port == 65535


def test_nul_byte_line_is_one_invalid_entry() -> None:
    assert_bad(parsed(b"\x00\x00\x00", 5), ErrorKind.INVALID_URL, 5)


def test_invalid_utf8_is_one_invalid_entry() -> None:
    entry = parsed(b"http://a.test/\xff\xfe", 6)
    assert_bad(entry, ErrorKind.INVALID_URL, 6, "UTF-8")
    # The request keeps a readable form of the line for the record.
    assert entry.request.url.startswith("http://a.test/")
    assert "\ufffd" in entry.request.url


def test_bracketed_userinfo_without_host_is_invalid_not_a_crash() -> None:
    assert_bad(parsed(b"http://[a]@", 2), ErrorKind.INVALID_URL, 2)


# -- parse_line: JSON objects -----------------------------------------------------------------


def test_json_object_with_every_field() -> None:
    raw = (
        b'{"url": "http://a.test/api", "method": "post", "headers": {"X-Token": "t"},'
        b' "body": "payload", "id": "job-1", "meta": {"tags": [1, 2], "n": null}}'
    )
    entry = parsed(raw, 2)
    assert entry.error is None
    assert entry.line == 2
    assert entry.target == URL("http://a.test/api")
    assert entry.request == Request(
        "http://a.test/api",
        method="POST",
        headers={"X-Token": "t"},
        body="payload",
        id="job-1",
        meta={"tags": [1, 2], "n": None},
    )


def test_json_object_with_only_a_url_equals_the_bare_url() -> None:
    entry = parsed(b'{"url": "http://a.test/"}')
    assert entry.error is None
    assert entry.request == Request("http://a.test/")
    assert entry.key == parsed(b"http://a.test/").key


def test_json_object_uses_the_default_method_unless_it_names_one() -> None:
    plain = parse_line(b'{"url": "http://a.test/"}', 1, default_method="DELETE")
    named = parse_line(b'{"url": "http://a.test/", "method": "PUT"}', 1, default_method="DELETE")
    assert plain is not None and plain.request.method == "DELETE"
    assert named is not None and named.request.method == "PUT"


def test_integer_id_becomes_a_string_and_keys_the_request() -> None:
    first = parsed(b'{"url": "http://a.test/one", "id": 7}')
    second = parsed(b'{"url": "http://a.test/two", "id": "7"}')
    assert first.request.id == "7"
    assert first.key == second.key  # the id alone is the key


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (
            b'{"url": "http://a.test/", "extra": 1, "another": 2}',
            "unknown field(s): another, extra",
        ),
        (b'{"method": "GET"}', "'url'"),
        (b'{"url": 5}', "'url'"),
        (b'{"url": null}', "'url'"),
        (b'{"url": "http://a.test/", "method": 1}', "'method'"),
        (b'{"url": "http://a.test/", "method": "GE T"}', "invalid method"),
        (b'{"url": "http://a.test/", "headers": ["X: 1"]}', "'headers'"),
        (b'{"url": "http://a.test/", "headers": {"X": 1}}', "'headers'"),
        (b'{"url": "http://a.test/", "headers": {"Bad Name": "1"}}', "invalid header name"),
        (b'{"url": "http://a.test/", "headers": {"X": "a\\r\\nY: b"}}', "line break"),
        (b'{"url": "http://a.test/", "body": {"a": 1}}', "'body'"),
        (b'{"url": "http://a.test/", "id": true}', "'id'"),
        (b'{"url": "http://a.test/", "id": 1.5}', "'id'"),
        (b'{"url": "not a url"}', "no scheme"),
    ],
)
def test_bad_json_objects_are_invalid(raw: bytes, fragment: str) -> None:
    assert_bad(parsed(raw, 8), ErrorKind.INVALID_URL, 8, fragment)


def test_json_object_with_an_unsupported_scheme() -> None:
    assert_bad(
        parsed(b'{"url": "ftp://a.test/f", "id": "x"}', 3), ErrorKind.UNSUPPORTED_SCHEME, 3, "ftp"
    )


@pytest.mark.parametrize(
    "raw", [b"{", b'{"url": "http://a.test/"', b"{'url': 'http://a.test/'}", b"{url}", b"{}}"]
)
def test_malformed_json_is_invalid(raw: bytes) -> None:
    entry = parsed(raw, 11)
    assert_bad(entry, ErrorKind.INVALID_URL, 11, "malformed JSON")
    assert entry.request.url == raw.decode()


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"http://a.test/"', b"42", b"null"])
def test_json_that_is_not_an_object_is_invalid(raw: bytes) -> None:
    assert_bad(parsed(raw, 4), ErrorKind.INVALID_URL, 4)


def test_each_bad_line_gives_its_own_entry() -> None:
    lines = [b"ftp://a.test/", b"{bad", b"http://", b"\xff"]
    entries = [parsed(raw, number) for number, raw in enumerate(lines, 1)]
    assert [entry.line for entry in entries] == [1, 2, 3, 4]
    assert len({entry.key for entry in entries}) == 4
    assert all(entry.error is not None and entry.error.kind in BAD_KINDS for entry in entries)


# -- parse_line: never raises -----------------------------------------------------------------

_URLISH = st.lists(
    st.sampled_from(
        [
            "http://",
            "https://",
            "ftp:",
            "[",
            "]",
            "::1",
            "@",
            ":",
            "/",
            "?",
            "#",
            "%",
            "%2",
            "%ff",
            ".",
            "a",
            "test",
            "xn--",
            "80",
            " ",
            "\t",
            "\x00",
            "ü",
            "☃",
            "\u3002",
            "\ufeff",
            '{"url": "',
            '"',
            "}",
            "{",
            "\\",
        ]
    ),
    max_size=16,
).map(lambda parts: "".join(parts).encode())


@settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=st.one_of(st.binary(max_size=300), _URLISH), line=st.integers(1, 10**9))
def test_parse_line_never_raises(raw: bytes, line: int) -> None:
    entry = parse_line(raw, line)
    assert entry is None or isinstance(entry, Entry)
    if entry is None:
        return
    assert entry.line == line
    if entry.error is None:
        assert entry.target is not None
        assert entry.target.scheme in {"http", "https"}
        assert len(entry.key) == 16
    else:
        assert entry.target is None
        assert entry.error.kind in BAD_KINDS
        assert entry.error.message.startswith(f"line {line}: ")


# -- FileSource -------------------------------------------------------------------------------

Opener = Callable[..., FileSource]


@pytest.fixture
async def open_source() -> AsyncIterator[Opener]:
    """Open file sources that are closed at the end of the test."""
    opened: list[FileSource] = []

    def opener(path: Path | str, **options: str) -> FileSource:
        source = FileSource(str(path), **options)
        opened.append(source)
        return source

    try:
        yield opener
    finally:
        for source in opened:
            await source.aclose()


async def read_all(source: FileSource, limit: int = 100) -> list[Entry]:
    entries: list[Entry] = []
    while (batch := await source.read_batch(limit)) is not None:
        entries.extend(batch)
    return entries


def write_lines(path: Path, lines: list[str], *, final_newline: bool = True) -> None:
    path.write_bytes(("\n".join(lines) + ("\n" if final_newline else "")).encode())


async def test_file_source_reads_entries_with_line_numbers(
    tmp_path: Path, open_source: Opener
) -> None:
    path = tmp_path / "in.txt"
    write_lines(
        path,
        [
            "# header",
            "http://a.test/1",
            "",
            '{"url": "http://a.test/2", "method": "POST"}',
            "ftp://a.test/3",
            "http://a.test/4",
        ],
        final_newline=False,
    )
    source = open_source(path)
    assert source.name == str(path)  # tmp_path is absolute
    entries = await read_all(source)
    assert [entry.line for entry in entries] == [2, 4, 5, 6]
    assert [entry.request.url for entry in entries] == [
        "http://a.test/1",
        "http://a.test/2",
        "ftp://a.test/3",
        "http://a.test/4",
    ]
    assert entries[1].request.method == "POST"
    assert entries[2].error is not None
    assert entries[2].error.kind is ErrorKind.UNSUPPORTED_SCHEME
    assert entries[2].error.message.startswith("line 5: ")
    assert source.position == Position(6, path.stat().st_size)
    # At the end it keeps answering None.
    assert await source.read_batch(10) is None


async def test_file_source_reads_lazily_in_batches(tmp_path: Path, open_source: Opener) -> None:
    path = tmp_path / "in.txt"
    lines = [f"http://a.test/{number}" for number in range(1, 11)]
    write_lines(path, lines)
    source = open_source(path)
    first = await source.read_batch(3)
    assert first is not None
    assert [entry.line for entry in first] == [1, 2, 3]
    consumed = sum(len(line) + 1 for line in lines[:3])
    assert source.position == Position(3, consumed)
    second = await source.read_batch(4)
    assert second is not None
    assert [entry.line for entry in second] == [4, 5, 6, 7]
    assert source.position == Position(7, sum(len(line) + 1 for line in lines[:7]))
    # Lazy: lines appended after reading began are still read.
    with path.open("ab") as file:
        file.write(b"http://a.test/11\n")
    rest = await source.read_batch(100)
    assert rest is not None
    assert [entry.line for entry in rest] == [8, 9, 10, 11]
    assert rest[-1].request.url == "http://a.test/11"
    assert await source.read_batch(3) is None


async def test_file_of_comments_yields_empty_batches_not_the_end(
    tmp_path: Path, open_source: Opener
) -> None:
    path = tmp_path / "in.txt"
    write_lines(path, [f"# comment {number}" for number in range(10)] + ["http://a.test/"])
    source = open_source(path)
    batches: list[list[Entry]] = []
    while (batch := await source.read_batch(1)) is not None:
        batches.append(batch)
        assert len(batches) < 20
    assert [] in batches  # a batch of comments is empty, not None
    found = [entry for batch in batches for entry in batch]
    assert [entry.line for entry in found] == [11]
    assert source.position.items == 11


async def test_crlf_lines(tmp_path: Path, open_source: Opener) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"http://a.test/1\r\n\r\nhttp://a.test/2\r\n")
    entries = await read_all(open_source(path))
    assert [(entry.line, entry.request.url) for entry in entries] == [
        (1, "http://a.test/1"),
        (3, "http://a.test/2"),
    ]
    assert all(entry.error is None for entry in entries)


async def test_default_method_applies_to_file_lines(tmp_path: Path, open_source: Opener) -> None:
    path = tmp_path / "in.txt"
    write_lines(path, ["http://a.test/", '{"url": "http://a.test/b", "method": "GET"}'])
    entries = await read_all(open_source(path, default_method="HEAD"))
    assert [entry.request.method for entry in entries] == ["HEAD", "GET"]


async def test_resume_by_byte_offset_continues_at_the_right_line(
    tmp_path: Path, open_source: Opener
) -> None:
    path = tmp_path / "in.txt"
    lines = [
        "http://a.test/1",
        "# skip me",
        "http://a.test/2",
        "",
        "http://a.test/3",
        "http://a.test/4",
        "bad line",
        "http://a.test/5",
    ]
    write_lines(path, lines, final_newline=False)
    first = open_source(path)
    head = await first.read_batch(2)
    assert head is not None
    assert [entry.line for entry in head] == [1, 3]
    saved = first.position
    assert saved == Position(3, sum(len(line) + 1 for line in lines[:3]))
    await first.aclose()

    second = open_source(path)
    await second.skip_to(saved)
    assert second.position == saved
    tail = await read_all(second)
    assert [(entry.line, entry.request.url) for entry in tail] == [
        (5, "http://a.test/3"),
        (6, "http://a.test/4"),
        (7, "bad line"),
        (8, "http://a.test/5"),
    ]
    bad = tail[2].error
    assert bad is not None and bad.message.startswith("line 7: ")
    assert second.position == Position(8, path.stat().st_size)


async def test_resume_at_the_end_reads_nothing(tmp_path: Path, open_source: Opener) -> None:
    path = tmp_path / "in.txt"
    write_lines(path, ["http://a.test/1", "http://a.test/2"])
    first = open_source(path)
    assert len(await read_all(first)) == 2
    second = open_source(path)
    await second.skip_to(first.position)
    assert await second.read_batch(10) is None


async def test_overlong_line_is_one_invalid_entry(tmp_path: Path, open_source: Opener) -> None:
    path = tmp_path / "in.txt"
    long_line = b"http://a.test/" + b"x" * (MAX_LINE_BYTES * 2 + 12345)
    path.write_bytes(
        b"http://a.test/1\n" + long_line + b"\nhttp://a.test/3\n# c\nhttp://a.test/5\n"
    )
    source = open_source(path)
    entries = await read_all(source, limit=10)
    assert [entry.line for entry in entries] == [1, 2, 3, 5]
    too_long = entries[1]
    assert too_long.error is not None
    assert too_long.error.kind is ErrorKind.INVALID_URL
    assert too_long.error.message == f"line 2: line longer than {MAX_LINE_BYTES} bytes"
    assert too_long.target is None
    assert len(too_long.request.url) <= 200  # not the whole line held in memory
    assert [entry.request.url for entry in (entries[0], entries[2], entries[3])] == [
        "http://a.test/1",
        "http://a.test/3",
        "http://a.test/5",
    ]
    assert all(entry.error is None for entry in (entries[0], entries[2], entries[3]))
    assert source.position == Position(5, path.stat().st_size)


async def test_overlong_line_at_the_end_without_newline(
    tmp_path: Path, open_source: Opener
) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"http://a.test/1\n" + b"y" * (MAX_LINE_BYTES + 10))
    source = open_source(path)
    entries = await read_all(source)
    assert [entry.line for entry in entries] == [1, 2]
    assert entries[1].error is not None
    assert "longer than" in entries[1].error.message
    assert source.position == Position(2, path.stat().st_size)


async def test_resume_after_an_overlong_line(tmp_path: Path, open_source: Opener) -> None:
    path = tmp_path / "in.txt"
    long_line = b"z" * (MAX_LINE_BYTES + 1)
    path.write_bytes(long_line + b"\nhttp://a.test/2\nhttp://a.test/3\n")
    first = open_source(path)
    batch = await first.read_batch(1)
    assert batch is not None and [entry.line for entry in batch] == [1]
    assert first.position == Position(1, len(long_line) + 1)
    second = open_source(path)
    await second.skip_to(first.position)
    rest = await read_all(second)
    assert [(entry.line, entry.request.url) for entry in rest] == [
        (2, "http://a.test/2"),
        (3, "http://a.test/3"),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", 0),
        (b"http://a.test/1\n", 1),
        (b"http://a.test/1\nhttp://a.test/2", 2),
        (b"# c\n\nhttp://a.test/1\n", 3),
        (b"\n" * 2500, 2500),
    ],
)
async def test_wait_total_counts_lines(
    tmp_path: Path, open_source: Opener, content: bytes, expected: int
) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(content)
    assert await open_source(path).wait_total() == expected


async def test_wait_total_of_a_file_larger_than_a_count_chunk(
    tmp_path: Path, open_source: Opener
) -> None:
    path = tmp_path / "in.txt"
    line = b"http://a.test/" + b"p" * 1000 + b"\n"
    path.write_bytes(line * 3000)  # about 3 MiB, several counting chunks
    assert await open_source(path).wait_total() == 3000


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
async def test_pipe_has_no_total_and_resumes_by_skipping_lines(
    tmp_path: Path, open_source: Opener
) -> None:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    # Opening read-write does not block on Linux and gives the reader a writer to wait for.
    writer = os.open(path, os.O_RDWR)
    try:
        source = open_source(path)
        os.write(writer, b"http://a.test/1\n# c\nhttp://a.test/3\nhttp://a.test/4\n")
    finally:
        os.close(writer)
    assert await source.wait_total() is None
    # A pipe cannot seek: the offset is ignored and the items are skipped by reading.
    await source.skip_to(Position(2, 999_999))
    entries = await read_all(source)
    assert [(entry.line, entry.request.url) for entry in entries] == [
        (3, "http://a.test/3"),
        (4, "http://a.test/4"),
    ]
