"""Options of ``shoal fetch`` that no other command-line test passed and checked.

Each test gives one option on the command line and asserts what the server saw or what the
record says, so a keyword dropped between the option and the engine fails here. Pacing is
asserted as counts (how many requests were in flight when each arrived), with margins of
hundreds of milliseconds either way, never as a speed.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.web_request import Request

import shoal
from tests.command import RESOLVE, finish, line_count, lines, start
from tests.command import shoal as run_shoal
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving, serve
from tests.tls_server import TLSServer, make_certificates

QUIET = ("--progress", "off", "-q")


@dataclass
class Seen:
    """What :class:`Recorder` saw of one host name."""

    in_flight: int = 0
    #: Requests in flight at each arrival, this one included, in order of arrival.
    at_arrival: list[int] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)


class Recorder:
    """A server that records, per host name, each request's method and how many of the
    host's requests were in flight when it arrived.

    ``/answer?s=0.05&status=200`` answers ``status`` after ``s`` seconds; ``/robots.txt``
    says ``Crawl-delay: 0.6`` to everyone.
    """

    def __init__(self) -> None:
        self.hosts: dict[str, Seen] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str, host: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def seen(self, host: str) -> Seen:
        return self.hosts.setdefault(host, Seen())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/robots.txt", self._robots)
        app.router.add_route("*", "/answer", self._answer)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _robots(self, request: Request) -> web.StreamResponse:
        return web.Response(text="User-agent: *\nCrawl-delay: 0.6\n")

    async def _answer(self, request: Request) -> web.StreamResponse:
        seen = self.seen((request.host or "").rsplit(":", 1)[0])
        seen.in_flight += 1
        seen.at_arrival.append(seen.in_flight)
        seen.methods.append(request.method)
        try:
            await asyncio.sleep(float(request.query.get("s", 0.05)))
            return web.Response(status=int(request.query.get("status", 200)), text="answer")
        finally:
            seen.in_flight -= 1


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    server = Recorder()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# -- requests ----------------------------------------------------------------------------------


async def test_method_is_used_for_lines_that_name_none(recorder: Recorder) -> None:
    plain = [recorder.url(f"/answer?n={n}", "m.test") for n in range(3)]
    own = recorder.url("/answer?n=own", "own.test")
    named = orjson.dumps({"url": own, "method": "PUT"}).decode()
    done = await run_shoal(
        "fetch", *RESOLVE, *QUIET, "--method", "post", stdin=lines(*plain, named)
    )
    assert done.code == 0, done.stderr
    assert recorder.seen("m.test").methods == ["POST"] * 3
    assert recorder.seen("own.test").methods == ["PUT"]  # a line's own method wins
    methods = {record["url"]: record["method"] for record in done.records()}
    assert methods == {**dict.fromkeys(plain, "POST"), own: "PUT"}


async def test_without_user_agent_the_default_names_shoal_and_its_version(
    server: Misbehaving,
) -> None:
    done = await run_shoal("fetch", *RESOLVE, *QUIET, stdin=lines(server.url("/ok")))
    assert done.code == 0, done.stderr
    [headers] = server.log.headers
    assert headers["User-Agent"] == f"shoal/{shoal.__version__}", headers


@pytest.mark.parametrize("option", ["-k", "--insecure"])
async def test_insecure_accepts_a_certificate_nobody_trusts(option: str) -> None:
    tls = TLSServer(make_certificates())
    await tls.start()
    try:
        url = tls.url("/ok", host="self-signed.test")
        refused = await run_shoal("fetch", *RESOLVE, *QUIET, "--retries", "0", stdin=lines(url))
        accepted = await run_shoal("fetch", *RESOLVE, *QUIET, option, stdin=lines(url))
    finally:
        await tls.stop()
    assert refused.code == 1, refused.stderr
    [record] = refused.records()
    assert record["error"]["kind"] == "tls", record
    assert accepted.code == 0, accepted.stderr
    [record] = accepted.records()
    assert record["status"] == 200 and record["error"] is None, record
    assert tls.requests["self-signed.test"] == 1  # only the insecure run got through


# -- timeouts and retries ----------------------------------------------------------------------


async def test_max_retry_after_ends_the_retries_of_a_longer_wait(server: Misbehaving) -> None:
    # Retry-After: 5 is longer than the 1 s allowed: no retry, the 429 is final at once.
    url = server.url("/retry-after/long?after=5&fail=1")
    done = await run_shoal(
        "fetch", *RESOLVE, *QUIET, "--retries", "2", "--max-retry-after", "1", stdin=lines(url)
    )
    [record] = done.records()
    assert record["status"] == 429 and record["attempts"] == 1, record
    assert server.log.paths["/retry-after/long"] == 1


async def test_read_timeout_ends_a_body_that_stops_coming(server: Misbehaving) -> None:
    # Ignored, the read timeout would be 10 s and the 5 s total timeout would end it first.
    url = server.url("/hang-body")
    options = ("--retries", "0", "--timeout", "5", "--read-timeout", "0.3")
    done = await run_shoal("fetch", *RESOLVE, *QUIET, *options, stdin=lines(url))
    assert done.code == 1, done.stderr
    [record] = done.records()
    assert record["error"] == {
        "kind": "timeout",
        "message": "Timeout on reading data from socket",
    }, record


async def test_connect_timeout_ends_a_connection_never_accepted() -> None:
    # A listener with a backlog of 0 whose one slot is taken: Linux drops further SYNs, so
    # the connection is never made. Ignored, the connect timeout would be 10 s and the 5 s
    # total timeout would end the attempt first, with its own message.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        url = f"http://c.test:{port}/"
        options = ("--retries", "0", "--timeout", "5", "--connect-timeout", "0.3")
        done = await run_shoal("fetch", *RESOLVE, *QUIET, *options, stdin=lines(url))
    assert done.code == 1, done.stderr
    [record] = done.records()
    assert record["error"] == {
        "kind": "timeout",
        "message": f"Connection timeout to host {url} (connect timeout 0.3 s)",
    }, record


# -- pacing ------------------------------------------------------------------------------------


async def test_burst_lets_that_many_start_together_within_the_rate(recorder: Recorder) -> None:
    # One request per 2 s, a burst of 3, each answered after 1 s: the first three are in
    # flight together; the fourth waits for the rate, alone, after they were answered.
    urls = [recorder.url(f"/answer?s=1&n={n}", "b.test") for n in range(4)]
    done = await run_shoal(
        "fetch", *RESOLVE, *QUIET, "--per-host-rate", "30/m", "--burst", "3", stdin=lines(*urls)
    )
    assert done.code == 0, done.stderr
    assert recorder.seen("b.test").at_arrival == [1, 2, 3, 1]


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "fixed"])
async def test_adaptive_narrows_the_window_of_a_host_answering_429(
    recorder: Recorder, adaptive: bool
) -> None:
    urls = [recorder.url(f"/answer?status=429&s=0.05&n={n}", "busy.test") for n in range(18)]
    options = ("--adaptive",) if adaptive else ()
    done = await run_shoal(
        "fetch", *RESOLVE, *QUIET, "--per-host", "8", "--retries", "0", *options,
        stdin=lines(*urls),
    )  # fmt: skip
    assert done.code == 0, done.stderr  # a 429 is a response (no --fail)
    assert len(done.records()) == 18
    arrivals = recorder.seen("busy.test").at_arrival
    assert len(arrivals) == 18 and max(arrivals[:8]) == 8, arrivals  # the first window
    if adaptive:
        assert max(arrivals[8:]) <= 4, arrivals  # halved on the first 429
        assert arrivals[-3:] == [1, 1, 1], arrivals  # down to one at a time
    else:
        assert max(arrivals[8:16]) > 4, arrivals


@pytest.mark.parametrize("honoured", [True, False], ids=["crawl-delay", "ignored"])
async def test_robots_crawl_delay_spaces_a_site_as_its_robots_txt_asks(
    recorder: Recorder, honoured: bool
) -> None:
    # Crawl-delay 0.6 s and pages answered after 0.2 s: honoured, no two pages overlap.
    urls = [recorder.url(f"/answer?s=0.2&n={n}", "slow.test") for n in range(3)]
    options = ("--robots-crawl-delay",) if honoured else ("--respect-robots",)
    done = await run_shoal("fetch", *RESOLVE, *QUIET, *options, stdin=lines(*urls))
    assert done.code == 0, done.stderr
    arrivals = recorder.seen("slow.test").at_arrival
    assert arrivals == ([1, 1, 1] if honoured else [1, 2, 3]), arrivals


# -- exit codes --------------------------------------------------------------------------------


async def test_sigterm_interrupts_fetch_with_130_and_the_same_command_resumes(
    server: Misbehaving, tmp_path: Path
) -> None:
    count = 200
    urls = [server.url(f"/delay?s=0.05&n={n}", host=f"t{n % 10}.test") for n in range(count)]
    source, output = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    source.write_bytes(lines(*urls))
    args = ("fetch", str(source), "-o", str(output), "-c", "4", *RESOLVE, "--progress", "off")
    process = await start(*args)
    try:
        await wait_until(lambda: line_count(output) >= 10, 10, "some records")
        process.send_signal(signal.SIGTERM)
        interrupted = await finish(process, within_s=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert interrupted.code == 130, interrupted.stderr
    assert "interrupted" in interrupted.stderr
    partial = read_records(output)
    assert 10 <= len(partial) < count
    rerun = await run_shoal(*args)
    assert rerun.code == 0, rerun.stderr
    assert f"{len(partial):,} already final" in rerun.stderr
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)


# -- backoff -----------------------------------------------------------------------------------


def retry_waits(stderr: str) -> list[tuple[int, float]]:
    """The waits ``-v`` announced, one per retry: (the attempt that failed, seconds)."""
    found = re.findall(r" attempt (\d+) .*; retry in (\d+\.\d{3}) s$", stderr, re.M)
    return [(int(attempt), float(wait)) for attempt, wait in found]


async def test_backoff_is_the_base_of_the_waits_between_retries(server: Misbehaving) -> None:
    # Full jitter below 0.002 * 2 ** (n - 1) after attempt n: at most 2, 4, 8 and 16 ms.
    # Ignored, the 0.5 s base would make twelve waits that small about never.
    urls = [server.url(f"/flaky/backoff{n}?fail=4") for n in range(3)]
    options = ("--retries", "4", "--backoff", "0.002", "--backoff-max", "100", "-v")
    done = await run_shoal("fetch", *RESOLVE, *QUIET, *options, stdin=lines(*urls))
    assert done.code == 0, done.stderr
    waits = retry_waits(done.stderr)
    assert sorted(attempt for attempt, _ in waits) == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    # (the log rounds to whole milliseconds)
    assert all(wait <= 0.002 * 2 ** (attempt - 1) + 0.0005 for attempt, wait in waits), waits
    assert [record["attempts"] for record in done.records()] == [5, 5, 5]


async def test_backoff_max_caps_every_wait(server: Misbehaving) -> None:
    # A 10 s base capped at 5 ms. Ignored, the 30 s cap would leave waits of up to 30 s.
    urls = [server.url(f"/flaky/capped{n}?fail=3") for n in range(3)]
    options = ("--retries", "3", "--backoff", "10", "--backoff-max", "0.005", "-v")
    done = await run_shoal("fetch", *RESOLVE, *QUIET, *options, stdin=lines(*urls))
    assert done.code == 0, done.stderr
    waits = retry_waits(done.stderr)
    assert len(waits) == 9, done.stderr
    assert max(wait for _, wait in waits) <= 0.005, waits


# -- dead endpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize("dead_after", [1, 3])
async def test_dead_after_parks_an_endpoint_after_that_many_failures(dead_after: int) -> None:
    # One at a time to a refused port, no retries: ``dead_after`` failures park it; three
    # failed probes give it up and the rest fail at once, unsent. Ignored, five would park it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = taken.getsockname()[1]
        urls = [f"http://127.0.0.1:{port}/n{n}" for n in range(12)]
        options = ("--per-host", "1", "--retries", "0", "--dead-cooldown", "0.02")
        done = await run_shoal(
            "fetch", *QUIET, *options, "--dead-after", str(dead_after), stdin=lines(*urls)
        )
    assert done.code == 1, done.stderr
    records = done.records()
    assert len(records) == 12 and all(r["error"]["kind"] == "connect" for r in records)
    given_up = [r for r in records if " given up " in r["error"]["message"]]
    assert len(given_up) == 12 - dead_after - 3, [r["error"] for r in records]
