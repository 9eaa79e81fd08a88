"""What a record tells of the response besides its status: the headers kept with
``--keep-headers``, the redirect chain, and the address connected to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
from aiohttp import web

import shoal
from tests.command import RESOLVE, lines
from tests.command import shoal as run_shoal
from tests.servers import Misbehaving, serve

SCHEMA = orjson.loads((Path(shoal.__file__).parent / "record.schema.json").read_bytes())
QUIET = ("--progress", "off", "--retries", "0")


async def _tagged(request: web.Request) -> web.Response:
    response = web.Response(text="tagged", headers={"ETag": '"v1"', "X-Other": "no"})
    response.headers["Last-Modified"] = "Tue, 01 Dec 2026 10:00:00 GMT"
    response.headers.add("Set-Cookie", "a=1")
    response.headers.add("Set-Cookie", "b=2")
    return response


@pytest.fixture
async def tagged() -> AsyncIterator[int]:
    """A server whose answers carry an ETag, a Last-Modified and two Set-Cookie headers."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", _tagged)
    runner, port = await serve(app)
    try:
        yield port
    finally:
        await runner.cleanup()


def valid(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for record in records:
        jsonschema.validate(record, SCHEMA)
    return records


async def test_keep_headers_keeps_the_named_ones_under_lower_case_names(tagged: int) -> None:
    url = f"http://t.test:{tagged}/page"
    done = await run_shoal(
        "fetch",
        *RESOLVE,
        *QUIET,
        "--keep-headers",
        "ETag,last-modified",
        "--keep-headers",
        "SET-COOKIE",
        stdin=lines(url),
    )
    assert done.code == 0, done.stderr
    [record] = valid(done.records())
    assert record["headers"] == {
        "etag": '"v1"',
        "last-modified": "Tue, 01 Dec 2026 10:00:00 GMT",
        "set-cookie": ["a=1", "b=2"],  # sent twice: both kept, in order
    }


async def test_keep_headers_all_keeps_every_header(tagged: int) -> None:
    done = await run_shoal(
        "fetch",
        *RESOLVE,
        *QUIET,
        "--keep-headers",
        "all",
        stdin=lines(f"http://t.test:{tagged}/page"),
    )
    assert done.code == 0, done.stderr
    [record] = valid(done.records())
    headers = record["headers"]
    assert headers["etag"] == '"v1"' and headers["x-other"] == "no"
    assert headers["content-type"].startswith("text/plain")
    assert headers["server"].startswith("Python/")  # aiohttp's own
    assert headers["content-length"] == "6"


async def test_without_keep_headers_a_record_has_none(server: Misbehaving) -> None:
    done = await run_shoal("fetch", *RESOLVE, *QUIET, stdin=lines(server.url("/ok")))
    assert done.code == 0, done.stderr
    [record] = valid(done.records())
    assert "headers" not in record


async def test_the_redirect_chain_and_the_address_connected_to(server: Misbehaving) -> None:
    chain = server.url("/redirect/3", host="r.test")
    plain = server.url("/ok", host="p.test")
    refused = "http://127.0.0.1:1/"
    done = await run_shoal("fetch", *RESOLVE, *QUIET, stdin=lines(chain, plain, refused))
    assert done.code == 1, done.stderr
    records = {record["line"]: record for record in valid(done.records())}
    redirected = records[1]
    assert redirected["redirect_chain"] == [
        {"url": server.url("/redirect/3", host="r.test"), "status": 302},
        {"url": server.url("/redirect/2", host="r.test"), "status": 302},
        {"url": server.url("/redirect/1", host="r.test"), "status": 302},
    ]
    assert redirected["redirects"] == 3
    assert redirected["final_url"] == server.url("/ok", host="r.test")
    assert redirected["address"] == f"127.0.0.1:{server.port}"
    assert records[2]["redirect_chain"] == []  # no redirect followed
    assert records[2]["address"] == f"127.0.0.1:{server.port}"
    assert records[3]["error"]["kind"] == "connect"
    assert records[3]["address"] is None  # nothing was connected to


async def test_a_redirect_loop_records_the_chain_it_followed(server: Misbehaving) -> None:
    done = await run_shoal(
        "fetch", *RESOLVE, *QUIET, "--max-redirects", "2", stdin=lines(server.url("/loop"))
    )
    assert done.code == 1, done.stderr
    [record] = valid(done.records())
    assert record["error"]["kind"] == "too_many_redirects"
    assert [hop["status"] for hop in record["redirect_chain"]] == [302, 302, 302]


@pytest.mark.parametrize("value", ["Bad Name", "ETag,,Server"])
async def test_a_bad_header_name_is_a_usage_error(server: Misbehaving, value: str) -> None:
    done = await run_shoal(
        "fetch", *RESOLVE, "--keep-headers", value, stdin=lines(server.url("/ok"))
    )
    assert done.code == 2, done.stderr
    assert "--keep-headers" in done.stderr
    assert server.log.total == 0
