"""The wire transport beside the aiohttp transport: the same requests to the same server
give the same answers (status, headers, body, final URL, redirects), the same failures
(kind, and the message where the two can agree), and the same records through the fetcher."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from yarl import URL

from shoal import Limits, Request, Timeouts
from shoal.fetching import Fetcher, SessionSettings
from shoal.fetching.aiohttp_transport import AiohttpTransport
from shoal.fetching.deadlines import Watchdog
from shoal.fetching.transport import Outgoing, Transport, TransportFailure
from shoal.fetching.wire import WireTransport
from shoal.job import Job
from tests.conftest import resolver
from tests.servers import Misbehaving

SETTINGS = SessionSettings(connections=8, resolver=resolver(), headers={"User-Agent": "shoal-test"})
PATHS = [
    "/ok",
    "/redirect/3",
    "/big?size=300000",
    "/status/204",
    "/status/304",
    "/status/404",
    "/redirect-to?url=/status/201",
]
#: Failures whose message the two transports word alike.
FAILURES = ["/drop", "/partial", "/loop"]
#: Paths whose handler writes a body even to HEAD: aiohttp reads those bytes as the next
#: response (a protocol error), the wire transport as a connection not to reuse.
WRITES_TO_HEAD = {"/big?size=300000", "/partial"}
#: Failures of the same kind, each transport's parser wording its own.
KINDS_ONLY = ["/bad-status", "/bad-chunk", "/huge-header"]


@pytest.fixture
async def transports() -> AsyncIterator[tuple[Transport, Transport]]:
    reference, wire = AiohttpTransport(SETTINGS), WireTransport(SETTINGS)
    try:
        yield reference, wire
    finally:
        await reference.close()
        await wire.close()


async def answer(transport: Transport, url: str, method: str = "GET") -> tuple[Any, ...]:
    request = Outgoing(method=method, url=url, max_redirects=3)
    try:
        async with transport.exchange(request) as response:
            headers = [(k, v) for k, v in response.headers.items() if k != "Date"]
            body = b"".join([chunk async for chunk in response.chunks()])
            return response.status, headers, body, response.url, list(response.history)
    except TransportFailure as failure:
        return failure.error.kind, failure.error.message, failure.redirect_chain


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_answers_are_equal(
    server: Misbehaving, transports: tuple[Transport, Transport], method: str
) -> None:
    reference, wire = transports
    for path in PATHS + FAILURES:
        if method == "HEAD" and path in WRITES_TO_HEAD:
            continue
        url = server.url(path)
        assert await answer(wire, url, method) == await answer(reference, url, method), path


async def test_failures_are_of_the_same_kind(
    server: Misbehaving, transports: tuple[Transport, Transport]
) -> None:
    reference, wire = transports
    for path in KINDS_ONLY:
        url = server.url(path)
        assert (await answer(wire, url))[0] == (await answer(reference, url))[0], path


#: Fields of a record that tell when, not what.
TIMING = {"elapsed_ms", "ttfb_ms", "started_at"}


async def record(transport: Transport, url: str) -> dict[str, Any]:
    watchdog = Watchdog(0.05)
    fetcher = Fetcher(
        transport,
        limits=Limits(max_redirects=4, max_bytes=200_000),
        timeouts=Timeouts(total_s=5, connect_s=2, read_s=0.5),
        watchdog=watchdog,
    )
    job = Job(1, Request(url), None, URL(url), None, "a.test")
    job.attempts = 1
    try:
        result = await fetcher.run(job)
    finally:
        watchdog.close()
    fields = {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
    headers = fields.pop("headers")
    fields["headers"] = (
        None if headers is None else sorted((k, v) for k, v in headers.items() if k != "Date")
    )
    return {name: value for name, value in fields.items() if name not in TIMING}


async def test_records_through_the_fetcher_are_equal(
    server: Misbehaving, transports: tuple[Transport, Transport]
) -> None:
    reference, wire = transports
    paths = [*PATHS, *FAILURES, "/big?size=300000", "/hang-body", "/gzip-bomb"]
    for path in paths:
        url = server.url(path)
        assert await record(wire, url) == await record(reference, url), path
