"""Pause and resume: a paused run starts no request (counted at the server), the ones in
flight finish, resume goes on to the end, and a paused run can still be stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shoal import Engine, Limits, Result, RetryPolicy, Timeouts
from tests import helpers
from tests.helpers import wait_until
from tests.servers import Misbehaving

QUIET_S = 0.3  # how long the server must see nothing while paused


def make_engine() -> Engine:
    return helpers.make_engine(
        limits=Limits(concurrency=4, per_host=4),
        timeouts=Timeouts(total_s=10, connect_s=5, read_s=5),
        retry=RetryPolicy(),
    )


def count_lines(path: str) -> int:
    return len(Path(path).read_bytes().splitlines())


def urls(server: Misbehaving, count: int) -> list[str]:
    return [server.url(f"/delay?s=0.02&n={n}") for n in range(count)]


async def test_pause_stops_new_requests_and_resume_finishes_the_run(
    server: Misbehaving,
) -> None:
    engine = make_engine()
    got: list[Result] = []
    async with engine, engine.stream(urls(server, 60)) as results:
        async for result in results:
            got.append(result)
            if len(got) == 10:
                engine.pause()
                assert engine.paused and engine.statistics().paused
                await wait_until(  # those already started finish
                    lambda: engine.statistics().in_flight == 0, 5, "the requests in flight end"
                )
                seen = server.log.total
                await asyncio.sleep(QUIET_S)
                assert server.log.total == seen  # nothing new reached the server
                assert engine.statistics().in_flight == 0
                engine.resume()
                assert not engine.statistics().paused
    assert len(got) == 60 and all(result.ok for result in got)
    assert server.log.total == 60


async def test_a_run_started_paused_sends_nothing_until_resumed(server: Misbehaving) -> None:
    engine = make_engine()
    engine.pause()
    async with engine:
        run = asyncio.create_task(engine.run(urls(server, 20)))
        await asyncio.sleep(QUIET_S)
        assert server.log.total == 0 and not run.done()
        assert engine.statistics().paused
        engine.resume()
        stats = await asyncio.wait_for(run, 10)
    assert stats.ok == 20 and not stats.paused


async def test_a_paused_run_stops_resumable(server: Misbehaving, tmp_path: Path) -> None:
    journal = str(tmp_path / "job.journal")
    output = str(tmp_path / "out.jsonl")
    engine = make_engine()
    async with engine:
        engine.pause()
        run = asyncio.create_task(engine.run(urls(server, 20), journal=journal, output=output))
        await asyncio.sleep(0.1)
        engine.stop()
        stopped = await asyncio.wait_for(run, 10)
    assert stopped.interrupted and stopped.done == 0 and server.log.total == 0
    async with make_engine() as again:
        finished = await again.run(urls(server, 20), journal=journal, output=output)
    assert finished.ok == 20 and not finished.interrupted
    assert server.log.total == 20
    assert count_lines(output) == 20
