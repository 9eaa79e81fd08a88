"""The engine end to end against a real server: caps, retries, dedup, handlers, streaming,
journal and outputs, and the blocking ``shoal.fetch``."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest

import shoal
from shoal import ErrorKind, Limits, Rejected, Request, Result, RetryPolicy, Timeouts
from tests.conftest import resolver
from tests.helpers import (
    FAST_RETRY,
    collect,
    fetch_all,
    make_engine,
    read_records,
    wait_until,
)
from tests.servers import Misbehaving

T = TypeVar("T")

SCHEMA_PATH = Path(shoal.__file__).parent / "record.schema.json"


def by_url(results: list[Result]) -> dict[str, Result]:
    found = {result.url: result for result in results}
    assert len(found) == len(results), "one result per URL expected"
    return found


# -- caps --------------------------------------------------------------------------------------


async def test_per_host_cap_seen_by_server(server: Misbehaving) -> None:
    hosts = ("a.test", "b.test", "c.test")
    urls = [server.url(f"/delay?s=0.05&n={n}", host=host) for host in hosts for n in range(10)]
    results = await fetch_all(urls, limits=Limits(concurrency=20, per_host=2))
    assert len(results) == 30
    assert all(result.ok and result.status == 200 for result in results)
    for host in hosts:
        load = server.log.hosts[host]
        assert load.requests == 10
        assert 1 < load.peak <= 2, (host, load.peak)
    assert server.log.peak <= 20


async def test_global_concurrency_cap_seen_by_server(server: Misbehaving) -> None:
    urls = [
        server.url(f"/delay?s=0.05&n={n}", host=f"g{h}.test") for h in range(8) for n in range(5)
    ]
    results = await fetch_all(urls, limits=Limits(concurrency=4, per_host=8))
    assert len(results) == 40 and all(result.ok for result in results)
    assert 1 < server.log.peak <= 4, server.log.peak
    assert server.log.total == 40


# -- retries -----------------------------------------------------------------------------------


async def test_flaky_succeeds_within_retries(server: Misbehaving) -> None:
    async with make_engine() as engine:
        [result] = await collect(engine, [server.url("/flaky/r2?fail=2&status=503")])
        stats = engine.statistics()
    assert result.ok and result.status == 200
    assert result.attempts == 3
    assert server.log.paths["/flaky/r2"] == 3
    assert stats.retries == 2 and stats.ok == 1


async def test_flaky_out_of_retries_keeps_last_status(server: Misbehaving) -> None:
    retry = RetryPolicy(retries=1, backoff_base_s=0.01)
    [result] = await fetch_all([server.url("/flaky/r1?fail=2&status=503")], retry=retry)
    assert result.status == 503
    assert result.attempts == 2
    assert result.ok  # a 503 is a response, not a failure, without fail_http
    assert server.log.paths["/flaky/r1"] == 2


async def test_flaky_out_of_retries_with_fail_http_is_http_status(server: Misbehaving) -> None:
    retry = RetryPolicy(retries=1, backoff_base_s=0.01)
    url = server.url("/flaky/f1?fail=5&status=503")
    [result] = await fetch_all([url], retry=retry, fail_http=True)
    assert result.error is not None and result.error.kind is ErrorKind.HTTP_STATUS
    assert result.status == 503 and result.attempts == 2


@pytest.mark.parametrize("retries", [0, 2])
async def test_connect_errors_are_retried(retries: int) -> None:
    retry = RetryPolicy(retries=retries, backoff_base_s=0.01)
    [result] = await fetch_all(["http://a.test:1/"], retry=retry)
    assert result.error is not None and result.error.kind is ErrorKind.CONNECT
    assert result.attempts == retries + 1


async def test_status_not_in_retry_set_is_not_retried(server: Misbehaving) -> None:
    [result] = await fetch_all([server.url("/flaky/n1?fail=1&status=404")])
    assert result.status == 404 and result.attempts == 1
    assert server.log.paths["/flaky/n1"] == 1


def _gap(server: Misbehaving, host: str = "a.test") -> float:
    times = server.log.hosts[host].times
    assert len(times) == 2, times
    return times[1] - times[0]


async def test_retry_after_seconds_is_honoured(server: Misbehaving) -> None:
    url = server.url("/retry-after/s1?status=429&after=1&fail=1")
    [result] = await fetch_all([url])
    assert result.ok and result.status == 200 and result.attempts == 2
    assert 0.95 <= _gap(server) < 3


async def test_retry_after_http_date_is_honoured(server: Misbehaving) -> None:
    # The date has whole seconds, so "now + 2 s" is between 1 and 2 s away.
    url = server.url("/retry-after/d1?status=503&after=2&fail=1&date=1")
    [result] = await fetch_all([url])
    assert result.ok and result.status == 200 and result.attempts == 2
    assert 0.9 <= _gap(server) < 3.5


async def test_retry_after_over_the_cap_ends_retries(server: Misbehaving) -> None:
    retry = RetryPolicy(retries=3, backoff_base_s=0.01, retry_after_max_s=1)
    started = time.monotonic()
    url = server.url("/retry-after/long?status=429&after=60&fail=1")
    [result] = await fetch_all([url], retry=retry, within_s=30)
    assert result.status == 429 and result.attempts == 1
    assert server.log.paths["/retry-after/long"] == 1
    # The claim: it gave up at once rather than wait out the Retry-After. That wait would
    # be 60 s, so a bound of 20 s tells the two apart with room for a loaded machine.
    assert time.monotonic() - started < 20


# -- deduplication -----------------------------------------------------------------------------


async def test_duplicates_are_fetched_once(server: Misbehaving) -> None:
    same = server.url("/flaky/d1?fail=0")
    by_id_first = server.url("/flaky/d2?fail=0")
    by_id_second = server.url("/flaky/d3?fail=0")
    shared = server.url("/flaky/d4?fail=0")
    requests: list[Any] = [
        same,
        same,
        same + "#fragment",  # the fragment is not part of the request
        {"url": by_id_first, "id": "x"},
        {"url": by_id_second, "id": "x"},
        {"url": shared, "id": "p"},
        Request(shared, id="q"),
    ]
    async with make_engine() as engine:
        results = await collect(engine, requests)
        stats = engine.statistics()
    assert len(results) == 4
    assert sorted((r.url, r.id) for r in results) == sorted(
        [(same, None), (by_id_first, "x"), (shared, "p"), (shared, "q")]
    )
    assert server.log.paths == Counter({"/flaky/d1": 1, "/flaky/d2": 1, "/flaky/d4": 2})
    assert stats.duplicates == 3
    assert stats.done == 4 and stats.total == 4


# -- handlers ----------------------------------------------------------------------------------


async def test_handler_return_value_is_data_and_body_dropped(server: Misbehaving) -> None:
    seen_bodies: list[bytes | None] = []

    async def handler(result: Result) -> Any:
        seen_bodies.append(result.body)
        return {"text": result.text(), "status": result.status}

    [result] = await fetch_all([server.url("/ok")], handler=handler)
    assert seen_bodies == [b"ok"]  # the handler reads the body even without keep_body
    assert result.ok and result.data == {"text": "ok", "status": 200}
    assert result.body is None  # keep_body=False: dropped after the handler


async def test_handler_with_keep_body_keeps_body(server: Misbehaving) -> None:
    async def handler(result: Result) -> Any:
        return len(result.body or b"")

    [result] = await fetch_all([server.url("/ok?size=10")], handler=handler, keep_body=True)
    assert result.data == 10
    assert result.body == b"o" * 10


async def test_keep_body_without_handler(server: Misbehaving) -> None:
    kept, dropped = (
        await fetch_all([server.url("/ok")], keep_body=True),
        await fetch_all([server.url("/ok")]),
    )
    assert kept[0].body == b"ok" and kept[0].text() == "ok"
    assert dropped[0].body is None


async def test_handler_rejected_is_handler_error(server: Misbehaving) -> None:
    async def handler(result: Result) -> Any:
        raise Rejected("not what I wanted")

    [result] = await fetch_all([server.url("/flaky/h1?fail=0")], handler=handler)
    assert result.error is not None and result.error.kind is ErrorKind.HANDLER
    assert result.error.message == "not what I wanted"
    assert result.status == 200 and result.attempts == 1
    assert result.data is None
    assert server.log.paths["/flaky/h1"] == 1


async def test_handler_rejected_with_retry_retries(server: Misbehaving) -> None:
    async def handler(result: Result) -> Any:
        raise Rejected("try again", retry=True)

    [result] = await fetch_all([server.url("/flaky/h2?fail=0")], handler=handler)
    assert result.error is not None and result.error.kind is ErrorKind.HANDLER
    assert result.attempts == FAST_RETRY.retries + 1
    assert server.log.paths["/flaky/h2"] == FAST_RETRY.retries + 1


async def test_handler_rejected_with_retry_then_accepted(server: Misbehaving) -> None:
    calls: list[int] = []

    async def handler(result: Result) -> Any:
        calls.append(result.attempts)
        if len(calls) == 1:
            raise Rejected("first answer is stale", retry=True)
        return "fresh"

    [result] = await fetch_all([server.url("/flaky/h3?fail=0")], handler=handler)
    assert result.ok and result.data == "fresh"
    assert result.attempts == 2 and calls == [1, 2]


async def test_handler_exception_fails_only_its_request(server: Misbehaving) -> None:
    bad = server.url("/ok?size=3")
    good = server.url("/ok?size=4")

    async def handler(result: Result) -> Any:
        if result.url == bad:
            raise ValueError("broken handler")
        return "fine"

    found = by_url(await fetch_all([bad, good], handler=handler))
    error = found[bad].error
    assert error is not None and error.kind is ErrorKind.HANDLER
    assert "ValueError" in error.message and "broken handler" in error.message
    assert found[bad].attempts == 1  # a handler bug is not retried
    assert found[good].ok and found[good].data == "fine"


async def test_handler_returning_non_json_value_is_handler_error(server: Misbehaving) -> None:
    async def handler(result: Result) -> Any:
        return object()

    [result] = await fetch_all([server.url("/ok")], handler=handler)
    assert result.error is not None and result.error.kind is ErrorKind.HANDLER
    assert result.data is None


# -- streaming ---------------------------------------------------------------------------------


async def test_stream_delivers_before_the_job_ends(server: Misbehaving) -> None:
    fast = server.url("/ok")
    waiting = server.url("/retry-after/w1?after=1&fail=1", host="b.test")
    slow = [server.url(f"/delay?s=0.5&n={n}", host="c.test") for n in range(2)]
    async with make_engine(limits=Limits(concurrency=10, per_host=4)) as engine:
        async with asyncio.timeout(8), engine.stream([fast, waiting, *slow]) as results:
            first = await asyncio.wait_for(anext(results), 2)
            assert first.url == fast and first.ok
            # The slow requests are still being served while the first result is out.
            slow_load = server.log.hosts["c.test"]
            await wait_until(lambda: slow_load.in_flight == 2, 0.3, "the slow requests")
            await wait_until(
                lambda: engine.statistics().waiting_retry == 1, 2, "a retry to be waiting"
            )
            during = engine.statistics()
            rest = await asyncio.wait_for(_drain(results), 5)
        after = engine.statistics()
    assert during.done >= 1 and during.total == 4 and not during.total_is_estimate
    assert during.retries == 1 and during.waiting_retry == 1
    assert during.in_flight <= 2 and during.done + during.in_flight + during.waiting_retry <= 4
    assert sorted(r.url for r in rest) == sorted([waiting, *slow])
    assert after.done == after.ok == 4 and after.failed == 0
    assert after.in_flight == 0 and after.queued == 0 and after.waiting_retry == 0
    assert after.retries == 1
    assert dict(after.by_status) == {"2xx": 4}
    assert after.latency.count == 4 and after.latency.max_ms is not None
    assert after.bytes == sum(r.bytes for r in [first, *rest])
    assert after.elapsed_s > 0.4 and not after.interrupted


async def _drain(results: Any) -> list[Result]:
    return [result async for result in results]


async def test_run_returns_statistics(server: Misbehaving) -> None:
    urls = [server.url(f"/ok?size={n}") for n in range(1, 6)] + ["http://a.test:1/"]
    async with make_engine(retry=RetryPolicy(retries=0)) as engine:
        stats = await asyncio.wait_for(engine.run(urls), 10)
        again = engine.statistics()
    assert stats == again
    assert stats.done == 6 and stats.ok == 5 and stats.failed == 1
    assert dict(stats.by_error) == {"connect": 1}
    assert stats.bytes == 15
    assert stats.job_ok == 5 and stats.job_failed == 1 and stats.skipped == 0


async def test_leaving_stream_early_stops_cleanly(server: Misbehaving) -> None:
    fast = [server.url(f"/ok?size={n}") for n in range(1, 4)]
    slow = [server.url(f"/hang?n={n}", host="b.test") for n in range(20)]
    got: list[Result] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patient = Timeouts(total_s=60, connect_s=2, read_s=60)
        limits = Limits(concurrency=8, per_host=8)
        async with make_engine(limits=limits, timeouts=patient) as engine:
            started = time.monotonic()
            async with asyncio.timeout(30), engine.stream(fast + slow) as results:
                async for result in results:
                    got.append(result)
                    if len(got) == 2:
                        break
            left_after = time.monotonic() - started
            # The engine is free again: a new job runs on it.
            again = await collect(engine, [server.url("/ok?size=99")])
        gc.collect()
    assert caught == []
    assert len(got) == 2 and all(r.url in fast for r in got)
    # The slow requests never end (they time out after 60 s): a bound of 20 s shows leaving
    # did not wait for them, with room for a loaded machine.
    assert left_after < 20, "leaving must not wait for the slow requests"
    assert [r.bytes for r in again] == [99]
    # The abandoned slow requests were cancelled, not left running against the server.
    await wait_until(lambda: server.log.in_flight == 0, 3, "the server to see no request")
    assert server.log.hosts["b.test"].requests <= 8


async def test_engine_outside_async_with_raises(server: Misbehaving) -> None:
    engine = make_engine()
    with pytest.raises(shoal.ShoalError, match="async with"):
        await asyncio.wait_for(engine.run([server.url("/ok")]), 5)


async def test_one_string_is_refused(server: Misbehaving) -> None:
    async with make_engine() as engine:
        with pytest.raises(TypeError, match="iterable of URLs or requests, not one string"):
            await asyncio.wait_for(engine.run(server.url("/ok")), 5)
    assert server.log.total == 0


async def test_one_job_at_a_time_per_engine(server: Misbehaving) -> None:
    async with make_engine() as engine:
        first = asyncio.create_task(engine.run([server.url("/delay?s=0.2")]))
        await wait_until(lambda: server.log.in_flight == 1, 3, "the first job's request")
        with pytest.raises(shoal.ShoalError, match="already running"):
            await asyncio.wait_for(engine.run([server.url("/ok")]), 5)
        stats = await asyncio.wait_for(first, 5)
    assert stats.ok == 1
    assert server.log.paths == Counter({"/delay": 1})


# -- journal and output ------------------------------------------------------------------------


async def test_second_run_with_journal_does_nothing(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url(f"/ok?size={n}", host=f"j{n % 3}.test") for n in range(1, 31)]
    journal, output = str(tmp_path / "job.journal"), tmp_path / "out.jsonl"
    async with make_engine() as engine:
        first = await asyncio.wait_for(engine.run(urls, journal=journal, output=str(output)), 10)
    hits = server.log.total
    size = output.stat().st_size
    async with make_engine() as engine:
        second = await asyncio.wait_for(engine.run(urls, journal=journal, output=str(output)), 10)
    assert hits == 30 and server.log.total == hits
    assert output.stat().st_size == size
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    assert first.done == 30 and first.skipped == 0
    assert second.done == 0 and second.skipped == 30
    assert second.job_ok == 30 and second.total == 30


async def test_stop_then_resume_is_exactly_once(server: Misbehaving, tmp_path: Path) -> None:
    # One host per URL, so the server's per-host count is a per-request count.
    urls = [server.url("/delay?s=0.05", host=f"r{n}.test") for n in range(60)]
    journal, output = str(tmp_path / "job.journal"), tmp_path / "out.jsonl"
    limits = Limits(concurrency=5, per_host=5)
    async with make_engine(limits=limits) as engine:
        task = asyncio.create_task(engine.run(urls, journal=journal, output=str(output)))
        await wait_until(lambda: engine.statistics().done >= 10, 5, "10 results")
        engine.stop()
        stopped = await asyncio.wait_for(task, 5)
    assert stopped.interrupted
    assert 10 <= stopped.done < 60
    assert len(read_records(output)) == stopped.done  # the output agrees with the journal
    async with make_engine(limits=limits) as engine:
        resumed = await asyncio.wait_for(engine.run(urls, journal=journal, output=str(output)), 10)
    assert not resumed.interrupted
    assert resumed.skipped == stopped.done
    assert resumed.done == 60 - stopped.done
    assert resumed.job_ok == 60
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    # stop() lets requests in flight finish: no request was sent twice.
    assert {server.log.hosts[f"r{n}.test"].requests for n in range(60)} == {1}


async def test_abort_then_resume_is_exactly_once(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url("/delay?s=0.05", host=f"x{n}.test") for n in range(60)]
    journal, output = str(tmp_path / "job.journal"), tmp_path / "out.jsonl"
    limits = Limits(concurrency=5, per_host=5)
    async with make_engine(limits=limits) as engine:
        task = asyncio.create_task(engine.run(urls, journal=journal, output=str(output)))
        await wait_until(lambda: engine.statistics().done >= 10, 5, "10 results")
        engine.abort()
        aborted = await asyncio.wait_for(task, 5)
    assert aborted.interrupted and aborted.done < 60
    assert len(read_records(output)) == aborted.done
    async with make_engine(limits=limits) as engine:
        resumed = await asyncio.wait_for(engine.run(urls, journal=journal, output=str(output)), 10)
    assert resumed.skipped == aborted.done and resumed.job_ok == 60
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    assert all(1 <= server.log.hosts[f"x{n}.test"].requests <= 2 for n in range(60))


async def test_leaving_stream_early_is_resumable(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url("/delay?s=0.05", host=f"e{n}.test") for n in range(40)]
    journal, output = str(tmp_path / "job.journal"), tmp_path / "out.jsonl"
    seen: list[str] = []
    async with make_engine(limits=Limits(concurrency=4, per_host=4)) as engine:
        async with (
            asyncio.timeout(5),
            engine.stream(urls, journal=journal, output=str(output)) as results,
        ):
            async for result in results:
                seen.append(result.url)
                if len(seen) == 6:
                    break
        rest = await asyncio.wait_for(engine.run(urls, journal=journal, output=str(output)), 10)
    assert rest.skipped >= len(seen)  # what the reader got was committed
    assert rest.job_ok == 40
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)


async def test_lost_output_is_rewritten_from_the_journal(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url(f"/ok?size={n}") for n in range(1, 11)]
    journal, output = str(tmp_path / "job.journal"), tmp_path / "out.jsonl"
    async with make_engine() as engine:
        await asyncio.wait_for(engine.run(urls, journal=journal, output=str(output)), 10)
    output.unlink()
    async with make_engine() as engine:
        await asyncio.wait_for(engine.run(urls, journal=journal, output=str(output)), 10)
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    assert server.log.total == 10


async def test_journal_of_another_input_is_refused(server: Misbehaving, tmp_path: Path) -> None:
    journal = str(tmp_path / "job.journal")
    other = tmp_path / "urls.txt"
    other.write_text(server.url("/ok") + "\n")
    async with make_engine() as engine:
        await asyncio.wait_for(engine.run([server.url("/ok")], journal=journal), 10)
        with pytest.raises(shoal.JournalError, match="another input"):
            await asyncio.wait_for(engine.run(shoal.FileSource(str(other)), journal=journal), 10)
        # A stream's reader gets the same error.
        with pytest.raises(shoal.JournalError, match="another input"):
            async with (
                asyncio.timeout(5),
                engine.stream(shoal.FileSource(str(other)), journal=journal) as results,
            ):
                await asyncio.wait_for(anext(results), 10)
    assert server.log.total == 1


async def test_stop_does_not_wait_for_a_pending_retry(server: Misbehaving, tmp_path: Path) -> None:
    waiting = server.url("/retry-after/st?after=60&fail=1")
    quick = server.url("/ok", host="b.test")
    journal, output = str(tmp_path / "job.journal"), tmp_path / "out.jsonl"
    async with make_engine(retry=RetryPolicy(retries=2, retry_after_max_s=120)) as engine:
        task = asyncio.create_task(
            engine.run([waiting, quick], journal=journal, output=str(output))
        )
        await wait_until(lambda: engine.statistics().waiting_retry == 1, 3, "a waiting retry")
        await wait_until(lambda: engine.statistics().done == 1, 3, "the quick result")
        started = time.monotonic()
        engine.stop()
        stopped = await asyncio.wait_for(task, 30)
        # The claim: the stop did not wait for the retry, which is due 60 s on; a bound of
        # 20 s tells the two apart with room for a loaded machine.
        assert time.monotonic() - started < 20
        assert stopped.interrupted and stopped.done == 1
        # The waiting request stayed pending: the next run fetches it (and it succeeds).
        resumed = await asyncio.wait_for(engine.run([waiting, quick], journal=journal), 5)
    assert resumed.done == 1 and resumed.ok == 1 and resumed.skipped == 1
    assert server.log.paths["/retry-after/st"] == 2
    assert Counter(r["url"] for r in read_records(output)) == Counter([quick])


async def test_dedup_across_input_batches_with_journal(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url(f"/ok?size={n}", host=f"b{n % 4}.test") for n in range(1, 531)]
    output = tmp_path / "out.jsonl"
    async with make_engine(limits=Limits(concurrency=50, per_host=20)) as engine:
        stats = await asyncio.wait_for(
            engine.run(
                urls + urls[:20] + urls[-5:],
                journal=str(tmp_path / "job.journal"),
                output=str(output),
            ),
            15,
        )
    assert stats.done == 530 and stats.duplicates == 25 and stats.total == 530
    assert server.log.total == 530
    assert Counter(r["url"] for r in read_records(output)) == Counter(urls)


async def test_failing_input_iterator_ends_the_run_with_its_error(server: Misbehaving) -> None:
    def items() -> Iterator[str]:
        yield server.url("/ok")
        raise RuntimeError("input broke")

    async with make_engine() as engine:
        with pytest.raises(RuntimeError, match="input broke"):
            await asyncio.wait_for(engine.run(items()), 5)
        # The engine is usable afterwards.
        stats = await asyncio.wait_for(engine.run([server.url("/ok?size=7")]), 5)
    assert stats.ok == 1


async def test_failing_input_iterator_reaches_the_stream_reader(server: Misbehaving) -> None:
    def items() -> Iterator[str]:
        yield server.url("/ok")
        raise RuntimeError("input broke")

    async with make_engine() as engine:
        with pytest.raises(RuntimeError, match="input broke"):
            await collect(engine, items())


async def test_async_input_items_are_fetched_while_the_input_pauses(server: Misbehaving) -> None:
    async def items() -> AsyncIterator[str]:
        for n in range(1, 4):
            yield server.url(f"/ok?size={n}")
        await asyncio.sleep(5)  # the producer pauses (a crawler waiting for pages, say)
        yield server.url("/ok?size=50")

    async with make_engine() as engine, asyncio.timeout(5), engine.stream(items()) as results:
        first = await asyncio.wait_for(anext(results), 1.5)
    assert first.bytes in {1, 2, 3}


async def test_stream_over_a_stalled_async_input_can_be_left(server: Misbehaving) -> None:
    closed = asyncio.Event()

    async def items() -> AsyncIterator[str]:
        try:
            await asyncio.sleep(3600)  # the input stalls before its first item
            yield server.url("/ok")
        finally:
            closed.set()

    async with make_engine() as engine:
        started = time.monotonic()
        async with asyncio.timeout(30), engine.stream(items()) as results:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(results), 0.2)
        # The claim: leaving does not wait for the stalled input (an hour); a bound of 20 s
        # tells the two apart with room for a loaded machine.
        assert time.monotonic() - started < 20
        stats = await asyncio.wait_for(engine.run([server.url("/ok")]), 5)
    assert closed.is_set(), "the input was not closed"
    assert stats.ok == 1


async def test_async_iterable_input(server: Misbehaving) -> None:
    async def items() -> AsyncIterator[Any]:
        for n in range(1, 6):
            await asyncio.sleep(0)
            yield {"url": server.url(f"/ok?size={n}"), "meta": n}

    results = await fetch_all(items())
    assert sorted((r.meta, r.bytes) for r in results) == [(n, n) for n in range(1, 6)]


# -- invalid input -----------------------------------------------------------------------------


async def test_invalid_items_become_error_records(server: Misbehaving) -> None:
    good = server.url("/ok")
    items: list[Any] = [
        "not a url",
        "ftp://a.test/file",
        "http://",
        42,
        {"url": 7},
        {"url": good, "bogus": 1},
        Request(good, method="BAD METHOD"),
        "http://exa mple.test/",
        "http://a.test:99999/",
        good,
    ]
    async with make_engine() as engine:
        results = await collect(engine, items)
        stats = engine.statistics()
    assert len(results) == len(items)
    by_line = {result.line: result for result in results}
    assert sorted(line or 0 for line in by_line) == list(range(1, len(items) + 1))
    kinds = {line: r.error.kind if r.error else None for line, r in by_line.items()}
    assert kinds == {
        1: ErrorKind.INVALID_URL,
        2: ErrorKind.UNSUPPORTED_SCHEME,
        3: ErrorKind.INVALID_URL,
        4: ErrorKind.INVALID_URL,
        5: ErrorKind.INVALID_URL,
        6: ErrorKind.INVALID_URL,
        7: ErrorKind.INVALID_URL,
        8: ErrorKind.INVALID_URL,
        9: ErrorKind.INVALID_URL,
        10: None,
    }
    assert all(r.attempts == 0 for r in results if not r.ok)
    assert by_line[10].status == 200
    assert server.log.total == 1
    assert stats.failed == 9 and stats.ok == 1


# -- records and the schema --------------------------------------------------------------------


async def test_records_validate_against_schema(server: Misbehaving, tmp_path: Path) -> None:
    schema = orjson.loads(SCHEMA_PATH.read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    reject = server.url("/ok?size=5")

    async def handler(result: Result) -> Any:
        if result.url == reject:
            raise Rejected("no thanks")
        return {"n": result.bytes, "tags": ["a", None, 1.5]}

    items: list[Any] = [
        server.url("/ok"),
        {
            "url": server.url("/echo"),
            "method": "POST",
            "body": "payload",
            "headers": {"X-Test": "1"},
            "id": "post-1",
            "meta": {"k": [1, 2, {"deep": True}]},
        },
        server.url("/redirect/2"),
        server.url("/status/404"),
        server.url("/flaky/s1?fail=1"),
        server.url("/gzip-bomb?size=1000"),
        reject,
        "http://a.test:1/",
        "not a url",
        "ftp://a.test/x",
        42,
    ]
    output = tmp_path / "out.jsonl"
    async with make_engine(handler=handler, retry=RetryPolicy(retries=1, backoff_base_s=0.01)) as e:
        await asyncio.wait_for(e.run(items, output=str(output)), 10)
    records = read_records(output)
    assert len(records) == len(items)
    for record in records:
        errors = sorted(validator.iter_errors(record), key=str)
        assert not errors, (record, [error.message for error in errors])
        assert list(record) == schema["required"]  # every field, in the documented order
    found = {record["url"]: record for record in records}
    post = found[server.url("/echo")]
    assert post["id"] == "post-1" and post["method"] == "POST"
    assert post["meta"] == {"k": [1, 2, {"deep": True}]}
    assert post["data"]["tags"] == ["a", None, 1.5]
    assert found[server.url("/redirect/2")]["redirects"] == 2
    assert found[server.url("/redirect/2")]["final_url"] == server.url("/ok")
    assert found[server.url("/flaky/s1?fail=1")]["attempts"] == 2
    assert found[reject]["error"] == {"kind": "handler", "message": "no thanks"}
    assert found["http://a.test:1/"]["error"]["kind"] == "connect"
    assert found["http://a.test:1/"]["status"] is None
    assert found["42"]["attempts"] == 0 and found["42"]["line"] == 11


async def test_stream_results_match_written_records(server: Misbehaving, tmp_path: Path) -> None:
    urls = [server.url(f"/ok?size={n}") for n in range(1, 8)] + ["not a url"]
    output = tmp_path / "out.jsonl"
    async with make_engine() as engine:

        async def read() -> list[Result]:
            async with engine.stream(urls, output=str(output)) as results:
                return [result async for result in results]

        streamed = await asyncio.wait_for(read(), 10)
    # Results are delivered in commit order, after being written.
    assert read_records(output) == [result.to_record() for result in streamed]


# -- shoal.fetch, the blocking iterator --------------------------------------------------------


@pytest.fixture
def thread_server() -> Iterator[Misbehaving]:
    """The misbehaving server on its own event loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server", daemon=True)
    thread.start()
    server = Misbehaving()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def bounded(function: Callable[[], T], timeout: float) -> T:
    """Run ``function`` in a thread; fail (instead of hanging) if it takes too long."""
    done: list[T] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            done.append(function())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failed.append(exc)

    thread = threading.Thread(target=target, name="test-consumer", daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s"
    if failed:
        raise failed[0]
    return done[0]


def engine_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "shoal-engine"]


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_fetch_blocking_iterates_all(
    thread_server: Misbehaving, caplog: pytest.LogCaptureFixture
) -> None:
    urls = [thread_server.url(f"/ok?size={n}") for n in range(1, 31)]

    def consume() -> list[Result]:
        return list(
            shoal.fetch(
                urls, network=shoal.Network(resolver=resolver()), concurrency=10, per_host=10
            )
        )

    results = bounded(consume, 10)
    assert sorted(r.bytes for r in results) == list(range(1, 31))
    assert all(r.ok for r in results)
    assert thread_server.log.total == 30
    assert engine_threads() == []
    assert problems(caplog) == []


def test_fetch_blocking_with_handler_and_output(thread_server: Misbehaving, tmp_path: Path) -> None:
    urls = [thread_server.url(f"/ok?size={n}") for n in range(1, 6)]
    output = tmp_path / "out.jsonl"

    async def handler(result: Result) -> Any:
        return len(result.text())

    def consume() -> list[Result]:
        return list(
            shoal.fetch(
                urls,
                network=shoal.Network(resolver=resolver()),
                handler=handler,
                output=str(output),
            )
        )

    results = bounded(consume, 10)
    assert sorted(r.data for r in results) == [1, 2, 3, 4, 5]
    assert sorted(record["data"] for record in read_records(output)) == [1, 2, 3, 4, 5]


def test_fetch_blocking_with_journal_resumes(thread_server: Misbehaving, tmp_path: Path) -> None:
    urls = [thread_server.url(f"/ok?size={n}") for n in range(1, 11)]
    journal = str(tmp_path / "job.journal")

    def consume() -> list[Result]:
        return list(shoal.fetch(urls, network=shoal.Network(resolver=resolver()), journal=journal))

    assert len(bounded(consume, 10)) == 10
    assert bounded(consume, 10) == []  # everything is final already: nothing new
    assert thread_server.log.total == 10


def test_fetch_blocking_break_early(
    thread_server: Misbehaving, caplog: pytest.LogCaptureFixture
) -> None:
    fast = [thread_server.url(f"/ok?size={n}") for n in range(1, 3)]
    slow = [thread_server.url(f"/hang?n={n}", host="b.test") for n in range(20)]

    def consume() -> list[Result]:
        got: list[Result] = []
        for result in shoal.fetch(
            fast + slow, network=shoal.Network(resolver=resolver()), concurrency=8, per_host=8
        ):
            got.append(result)
            if len(got) == 2:
                break
        return got

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.monotonic()
        got = bounded(consume, 30)
        elapsed = time.monotonic() - started
        gc.collect()
    assert caught == []
    assert sorted(r.url for r in got) == sorted(fast)
    # The slow requests never end (they time out after shoal.fetch's default 30 s): a bound
    # of 15 s shows the break did not wait for them, with room for a loaded machine.
    assert elapsed < 15, "break must not wait for the slow requests"
    assert engine_threads() == []
    assert problems(caplog) == []


def test_fetch_blocking_break_with_a_full_queue(
    thread_server: Misbehaving, caplog: pytest.LogCaptureFixture
) -> None:
    # Far more results than the hand-over queue holds: the engine blocks on it.
    urls = [thread_server.url(f"/ok?size={n}", host=f"q{n % 4}.test") for n in range(1, 601)]

    def consume() -> str:
        iterator = shoal.fetch(
            urls, network=shoal.Network(resolver=resolver()), concurrency=50, per_host=50
        )
        first = next(iterator)
        deadline = time.monotonic() + 5
        while thread_server.log.total < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        # The precondition: more requests answered than the hand-over queue holds (256)
        # while the caller took one result, so the engine is blocked on a full queue
        # when the iterator is closed.
        assert thread_server.log.total >= 300, thread_server.log.total
        assert isinstance(iterator, Generator)
        iterator.close()
        return first.url

    assert bounded(consume, 10) in urls
    assert engine_threads() == []
    assert problems(caplog) == []


def test_fetch_blocking_closed_unstarted_does_nothing(thread_server: Misbehaving) -> None:
    def consume() -> int:
        iterator = shoal.fetch(
            [thread_server.url("/ok")], network=shoal.Network(resolver=resolver())
        )
        assert isinstance(iterator, Generator)
        iterator.close()  # never iterated: no engine ever started
        return len(engine_threads())

    assert bounded(consume, 5) == 0
    assert thread_server.log.total == 0


def test_fetch_blocking_raises_in_callers_thread(thread_server: Misbehaving) -> None:
    def consume() -> list[Result]:
        return list(
            shoal.fetch(thread_server.url("/ok"), network=shoal.Network(resolver=resolver()))
        )

    with pytest.raises(TypeError, match="one string"):
        bounded(consume, 5)
    assert engine_threads() == []


# -- the engine's parameters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "place"),
    [
        ("keep_body", r"outputs=Outputs\(keep_body=\.\.\.\)"),
        ("resolver", r"network=Network\(resolver=\.\.\.\)"),
        ("seed", r"retry=RetryPolicy\(seed=\.\.\.\)"),
    ],
)
def test_a_keyword_that_moved_into_a_value_class_names_its_new_place(
    keyword: str, place: str
) -> None:
    moved: dict[str, Any] = {keyword: None}
    with pytest.raises(TypeError, match=f"no {keyword!r} any more: pass {place}"):
        shoal.Engine(**moved)


def test_an_unknown_keyword_is_a_type_error() -> None:
    unknown: dict[str, Any] = {"speed": 1}
    with pytest.raises(TypeError, match="unexpected keyword argument 'speed'"):
        shoal.Engine(**unknown)


async def test_the_moved_settings_reach_the_engine(server: Misbehaving) -> None:
    import inspect

    assert len(inspect.signature(shoal.Engine).parameters) == 11  # ten, and the moved ones' catch
    engine = shoal.Engine(
        outputs=shoal.Outputs(keep_body=True),
        network=shoal.Network(resolver=resolver()),
        retry=RetryPolicy(seed=7),
    )
    async with engine, engine.stream([server.url("/ok?size=10", host="a.test")]) as results:
        [result] = [result async for result in results]
    # (a.test is known only to the tests' resolver: the engine used it)
    assert result.ok and result.body is not None and len(result.body) == 10
