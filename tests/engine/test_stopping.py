"""Stopping while the input is quiet, and request headers merged case-insensitively."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from shoal import Engine, Limits, Network
from tests.conftest import resolver
from tests.servers import Misbehaving


async def test_stop_ends_a_run_whose_async_input_is_waiting(server: Misbehaving) -> None:
    release = asyncio.Event()

    async def frontier() -> AsyncIterator[str]:
        yield server.url("/ok")
        await release.wait()  # a crawler waiting for links that will not come
        yield server.url("/ok?size=3")

    async with Engine(network=Network(resolver=resolver())) as engine:
        run = asyncio.create_task(engine.run(frontier()))
        deadline = asyncio.get_running_loop().time() + 5
        while engine.statistics().done < 1:
            assert asyncio.get_running_loop().time() < deadline, "the first item was not fetched"
            await asyncio.sleep(0.01)
        engine.stop()
        stats = await asyncio.wait_for(run, 5)
    assert stats.done == 1
    assert stats.interrupted
    release.set()


async def test_stop_before_run_is_honoured_and_the_next_run_goes_on(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url(f"/ok?i={i}") for i in range(5)]
    journal = str(tmp_path / "job.journal")
    async with Engine(network=Network(resolver=resolver())) as engine:
        engine.stop()
        stopped = await asyncio.wait_for(engine.run(urls, journal=journal), 5)
        assert (stopped.done, stopped.interrupted) == (0, True)
        assert server.log.total == 0  # nothing was sent
        resumed = await engine.run(urls, journal=journal)  # the stop was that run's only
    assert (resumed.done, resumed.ok, resumed.interrupted) == (5, 5, False)
    assert server.log.total == 5


async def test_stop_after_a_run_ended_leaves_its_statistics(server: Misbehaving) -> None:
    async with Engine(network=Network(resolver=resolver())) as engine:
        finished = await engine.run([server.url("/ok")])
        engine.stop()  # a dashboard's late Stop, say: the run already ended
        after = engine.statistics()
        assert not finished.interrupted and not after.interrupted and after.finished
        assert after.done == 1


async def test_lower_case_user_agent_header_replaces_the_default(server: Misbehaving) -> None:
    engine = Engine(
        network=Network(headers={"user-agent": "mine/1"}, resolver=resolver()),
        limits=Limits(concurrency=1),
    )
    async with engine:
        stats = await engine.run([server.url("/echo")])
    assert stats.ok == 1
    sent = server.log.headers[-1]
    assert sent.get("User-Agent") == "mine/1"
