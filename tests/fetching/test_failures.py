"""Each misbehaviour of a real server ends in the right error kind, quickly."""

from __future__ import annotations

import time

import pytest

import shoal
from shoal import ErrorKind, Limits, RetryPolicy, Timeouts
from tests.conftest import resolver
from tests.helpers import engine_options
from tests.servers import Misbehaving


async def fetch_one(url: str | dict[str, str], **options: object) -> shoal.Result:
    options.setdefault("retry", RetryPolicy(retries=0))
    options.setdefault("timeouts", Timeouts(total_s=2, connect_s=1, read_s=1))
    engine = shoal.Engine(**engine_options({"resolver": resolver(), **options}))
    async with engine, engine.stream([url]) as results:
        found = [result async for result in results]
    assert len(found) == 1
    return found[0]


async def test_success_records_body_facts(server: Misbehaving) -> None:
    result = await fetch_one(server.url("/ok?size=1000"))
    assert result.ok
    assert result.status == 200
    assert result.bytes == 1000
    assert result.sha256 == __import__("hashlib").sha256(b"o" * 1000).hexdigest()
    assert result.content_type is not None and result.content_type.startswith("text/plain")
    assert result.attempts == 1
    assert result.elapsed_ms is not None and result.ttfb_ms is not None
    assert 0 <= result.ttfb_ms <= result.elapsed_ms


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/hang", ErrorKind.TIMEOUT),
        ("/hang-body", ErrorKind.TIMEOUT),
        ("/drop", ErrorKind.RESET),
        ("/partial", ErrorKind.RESET),
        ("/bad-chunk", ErrorKind.PROTOCOL),
        ("/bad-status", ErrorKind.PROTOCOL),
        ("/huge-header", ErrorKind.TOO_LARGE),
        ("/loop", ErrorKind.TOO_MANY_REDIRECTS),
    ],
)
async def test_misbehaviour_maps_to_kind(server: Misbehaving, path: str, kind: ErrorKind) -> None:
    started = time.monotonic()
    result = await fetch_one(server.url(path))
    assert result.error is not None, result
    assert result.error.kind is kind, result.error
    assert time.monotonic() - started < 5


async def test_trickle_is_bounded_by_total_timeout(server: Misbehaving) -> None:
    started = time.monotonic()
    result = await fetch_one(
        server.url("/trickle?n=1000&every=0.1"),
        timeouts=Timeouts(total_s=1, connect_s=1, read_s=1),
    )
    assert result.error is not None and result.error.kind is ErrorKind.TIMEOUT
    assert "total" in result.error.message
    assert time.monotonic() - started < 3


async def test_unknown_host_is_dns_error(server: Misbehaving) -> None:
    result = await fetch_one(f"http://nowhere.invalid:{server.port}/ok")
    assert result.error is not None and result.error.kind is ErrorKind.DNS


async def test_refused_connection_is_connect_error() -> None:
    result = await fetch_one("http://a.test:1/")
    assert result.error is not None and result.error.kind is ErrorKind.CONNECT


async def test_body_over_max_bytes_is_too_large(server: Misbehaving) -> None:
    result = await fetch_one(server.url("/big?size=200000"), limits=Limits(max_bytes=100_000))
    assert result.error is not None and result.error.kind is ErrorKind.TOO_LARGE


async def test_head_announcing_a_large_body_is_not_too_large(server: Misbehaving) -> None:
    # A HEAD answer's Content-Length is the size of the body a GET would get; none comes.
    result = await fetch_one(
        {"url": server.url("/ok?size=200000"), "method": "HEAD"},
        limits=Limits(max_bytes=100_000),
    )
    assert result.ok and result.status == 200 and result.bytes == 0


async def test_gzip_bomb_stops_on_decompressed_size(server: Misbehaving) -> None:
    result = await fetch_one(
        server.url("/gzip-bomb?size=67108864"), limits=Limits(max_bytes=1024 * 1024)
    )
    assert result.error is not None and result.error.kind is ErrorKind.TOO_LARGE


async def test_gzip_body_is_hashed_decoded(server: Misbehaving) -> None:
    result = await fetch_one(server.url("/gzip-bomb?size=5000"), keep_body=True)
    assert result.ok
    assert result.bytes == 5000
    assert result.body == b"\0" * 5000


async def test_redirect_chain_within_limit(server: Misbehaving) -> None:
    result = await fetch_one(server.url("/redirect/3"), limits=Limits(max_redirects=3))
    assert result.ok
    assert result.redirects == 3
    assert result.final_url == server.url("/ok")


async def test_redirect_chain_over_limit(server: Misbehaving) -> None:
    result = await fetch_one(server.url("/redirect/4"), limits=Limits(max_redirects=3))
    assert result.error is not None and result.error.kind is ErrorKind.TOO_MANY_REDIRECTS
    assert result.error.message == (
        f"more than 3 redirects (max_redirects); the last from {server.url('/redirect/1')} to /ok"
    )


async def test_redirect_loop_names_the_limit_and_the_last_location(server: Misbehaving) -> None:
    result = await fetch_one(server.url("/loop"), limits=Limits(max_redirects=5))
    assert result.error is not None and result.error.kind is ErrorKind.TOO_MANY_REDIRECTS
    assert result.error.message == (
        f"more than 5 redirects (max_redirects); the last from {server.url('/loop')} to /loop"
    )


async def test_zero_redirects_returns_the_redirect(server: Misbehaving) -> None:
    result = await fetch_one(server.url("/redirect/1"), limits=Limits(max_redirects=0))
    assert result.ok
    assert result.status == 302


async def test_redirect_to_other_scheme_is_unsupported(server: Misbehaving) -> None:
    result = await fetch_one(server.url("/redirect-to?url=ftp://a.test/file"))
    assert result.error is not None and result.error.kind is ErrorKind.UNSUPPORTED_SCHEME


async def test_fail_http_marks_non_2xx(server: Misbehaving) -> None:
    plain = await fetch_one(server.url("/status/404"))
    assert plain.ok and plain.status == 404
    failed = await fetch_one(server.url("/status/404"), fail_http=True)
    assert failed.error is not None and failed.error.kind is ErrorKind.HTTP_STATUS
    assert failed.status == 404
