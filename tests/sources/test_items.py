"""Library items (strings, URLs, Requests, mappings) as entries, and the iterable source."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import MappingProxyType

import pytest
from yarl import URL

from shoal.job import Entry
from shoal.request import Request
from shoal.result import ErrorKind
from shoal.sources.items import IterableSource, entry_for
from shoal.sources.source import Position


async def read_all(source: IterableSource, limit: int = 100) -> list[Entry]:
    entries: list[Entry] = []
    while (batch := await source.read_batch(limit)) is not None:
        assert 0 < len(batch) <= limit
        entries.extend(batch)
    return entries


def urls(count: int) -> list[str]:
    return [f"http://a.test/{number}" for number in range(1, count + 1)]


# -- entry_for --------------------------------------------------------------------------------


def test_entry_for_str() -> None:
    entry = entry_for("  http://a.test/x  ", 4)
    assert entry.error is None
    assert entry.request == Request("http://a.test/x")
    assert entry.target == URL("http://a.test/x")
    assert entry.line == 4  # the item's position stands in for a line number
    assert len(entry.key) == 16


def test_entry_for_yarl_url() -> None:
    entry = entry_for(URL("http://a.test/path?q=1"), 1)
    assert entry.error is None
    assert entry.request == Request("http://a.test/path?q=1")
    assert entry.key == entry_for("http://a.test/path?q=1", 9).key


def test_entry_for_request_keeps_every_field() -> None:
    request = Request(
        "http://a.test/api",
        method="POST",
        headers={"Content-Type": "text/plain"},
        body=b"\x00\x01",
        id=None,
        meta=[1, "two"],
    )
    entry = entry_for(request, 2)
    assert entry.error is None
    assert entry.request is request
    assert entry.target == URL("http://a.test/api")
    assert entry.key != entry_for("http://a.test/api", 2).key


def test_entry_for_mapping() -> None:
    entry = entry_for({"url": "http://a.test/", "method": "put", "id": 12, "meta": {"k": 1}}, 3)
    assert entry.error is None
    assert entry.request == Request("http://a.test/", method="PUT", id="12", meta={"k": 1})
    assert entry.line == 3


def test_entry_for_any_mapping_type() -> None:
    entry = entry_for(MappingProxyType({"url": "http://a.test/"}), 1)
    assert entry.error is None
    assert entry.request == Request("http://a.test/")


def test_entry_for_mapping_accepts_a_bytes_body() -> None:
    entry = entry_for({"url": "http://a.test/", "method": "POST", "body": b"\xff"}, 1)
    assert entry.error is None
    assert entry.request.body == b"\xff"


@pytest.mark.parametrize(
    ("item", "type_name"),
    [(42, "int"), (None, "NoneType"), (b"http://a.test/", "bytes"), (["http://a.test/"], "list")],
)
def test_entry_for_unsupported_types(item: object, type_name: str) -> None:
    entry = entry_for(item, 5)
    assert entry.error is not None
    assert entry.error.kind is ErrorKind.INVALID_URL
    assert entry.error.message == f"line 5: unsupported item {type_name}"
    assert entry.target is None
    assert entry.request.url == repr(item)
    assert entry.key == b"invalid\x005"


@pytest.mark.parametrize(
    ("item", "kind", "fragment"),
    [
        ("ftp://a.test/", ErrorKind.UNSUPPORTED_SCHEME, "ftp"),
        (URL("file:///etc/passwd"), ErrorKind.UNSUPPORTED_SCHEME, "file"),
        ("", ErrorKind.INVALID_URL, "empty"),
        ("not a url", ErrorKind.INVALID_URL, "no scheme"),
        (Request("http://a.test/", method="GE T"), ErrorKind.INVALID_URL, "invalid method"),
        (Request("http://a.test/", headers={"X": "a\nb"}), ErrorKind.INVALID_URL, "line break"),
        (Request("http://a.test/", headers={"": "v"}), ErrorKind.INVALID_URL, "header name"),
        ({"url": "http://a.test/", "nope": 1}, ErrorKind.INVALID_URL, "unknown field"),
        ({"href": "http://a.test/"}, ErrorKind.INVALID_URL, "unknown field"),
        ({}, ErrorKind.INVALID_URL, "'url'"),
    ],
)
def test_entry_for_bad_items(item: object, kind: ErrorKind, fragment: str) -> None:
    entry = entry_for(item, 8)
    assert entry.error is not None
    assert entry.error.kind is kind
    assert entry.error.message.startswith("line 8: ")
    assert fragment in entry.error.message
    assert entry.target is None
    assert entry.key == b"invalid\x008"


def test_same_url_from_different_item_types_has_one_key() -> None:
    keys = {
        entry_for("http://a.test/x", 1).key,
        entry_for(URL("http://a.test/x"), 2).key,
        entry_for(Request("http://a.test/x"), 3).key,
        entry_for({"url": "http://a.test/x"}, 4).key,
        entry_for("HTTP://A.TEST:80/x#frag", 5).key,
    }
    assert len(keys) == 1


# -- IterableSource ---------------------------------------------------------------------------


async def test_list_source() -> None:
    source = IterableSource(urls(5))
    assert source.name == "<iterable>"
    entries = await read_all(source, limit=2)
    assert [entry.line for entry in entries] == [1, 2, 3, 4, 5]
    assert [entry.request.url for entry in entries] == urls(5)
    assert source.position == Position(5)
    assert await source.read_batch(2) is None


async def test_a_sized_input_gives_its_size_before_it_is_read() -> None:
    assert await IterableSource(urls(5)).wait_total() == 5  # the progress line's total
    assert await IterableSource(tuple(urls(3))).wait_total() == 3
    assert await IterableSource(iter(urls(5))).wait_total() is None  # unknown until read


async def test_empty_source() -> None:
    source = IterableSource([])
    assert await source.read_batch(10) is None
    assert source.position == Position(0)


async def test_generator_is_read_lazily() -> None:
    pulled: list[int] = []

    def generate() -> Iterator[str]:
        for number in range(1, 101):
            pulled.append(number)
            yield f"http://a.test/{number}"

    source = IterableSource(generate())
    assert pulled == []
    batch = await source.read_batch(3)
    assert batch is not None and [entry.line for entry in batch] == [1, 2, 3]
    assert pulled == [1, 2, 3]
    assert source.position == Position(3)


async def test_async_generator_source_and_aclose() -> None:
    state = {"closed": False, "pulled": 0}

    async def generate() -> AsyncIterator[object]:
        try:
            for number in range(1, 11):
                state["pulled"] = number
                yield {"url": f"http://a.test/{number}", "id": f"id-{number}"}
        finally:
            state["closed"] = True

    source = IterableSource(generate())
    batch = await source.read_batch(4)
    assert batch is not None
    assert [entry.request.id for entry in batch] == ["id-1", "id-2", "id-3", "id-4"]
    assert state["pulled"] == 4
    await source.aclose()
    assert state["closed"] is True


async def test_async_generator_read_to_the_end() -> None:
    async def generate() -> AsyncIterator[str]:
        for url in urls(7):
            yield url

    entries = await read_all(IterableSource(generate()), limit=3)
    assert [entry.request.url for entry in entries] == urls(7)
    assert [entry.line for entry in entries] == list(range(1, 8))


async def test_mixed_items_each_become_one_entry() -> None:
    items: list[object] = [
        "http://a.test/1",
        URL("http://a.test/2"),
        Request("http://a.test/3", method="HEAD"),
        {"url": "http://a.test/4"},
        3.14,
        "ftp://a.test/6",
    ]
    entries = await read_all(IterableSource(items))
    assert [entry.line for entry in entries] == [1, 2, 3, 4, 5, 6]
    assert [entry.error is None for entry in entries] == [True, True, True, True, False, False]
    assert entries[2].request.method == "HEAD"


async def test_skip_to_resumes_after_the_items_already_read() -> None:
    first = IterableSource(urls(6))
    batch = await first.read_batch(4)
    assert batch is not None
    second = IterableSource(urls(6))
    await second.skip_to(first.position)
    assert second.position == Position(4)
    rest = await read_all(second)
    assert [(entry.line, entry.request.url) for entry in rest] == [
        (5, "http://a.test/5"),
        (6, "http://a.test/6"),
    ]


async def test_skip_to_on_an_async_generator() -> None:
    async def generate() -> AsyncIterator[str]:
        for url in urls(5):
            yield url

    source = IterableSource(generate())
    await source.skip_to(Position(3))
    rest = await read_all(source)
    assert [entry.line for entry in rest] == [4, 5]


async def test_skip_past_the_end_is_harmless() -> None:
    source = IterableSource(urls(2))
    await source.skip_to(Position(10))
    assert await source.read_batch(5) is None


def test_library_mapping_that_is_not_a_request_is_recorded_as_json() -> None:
    entry = entry_for({"href": "http://a.test/", "n": [1, None]}, 3)
    assert entry.error is not None
    assert isinstance(entry.work, Request)
    assert entry.work.url == '{"href":"http://a.test/","n":[1,null]}'
