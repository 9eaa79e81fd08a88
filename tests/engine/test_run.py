"""A run and the engine's lifetime around it: the counts a run takes from the journal, what
a map leaves of the caller's source, and what entering and leaving an engine close."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal import ConfigError, Engine, Limits, Network, Outputs, Result, Statistics
from shoal.store import SQLiteStore
from tests.conftest import resolver
from tests.helpers import wait_until
from tests.servers import Misbehaving
from tests.site_server import TreeSite

_HREF = re.compile(r'href="([^"]+)"')


@pytest.fixture
async def site() -> AsyncIterator[TreeSite]:
    tree = TreeSite(pages=40, fanout=4)
    await tree.start()
    try:
        yield tree
    finally:
        await tree.stop()


async def stopped_crawl(site: TreeSite, journal: str, *, read_during: bool) -> Statistics:
    """A crawl whose first page stops it: its follow-ups are admitted, never fetched."""

    async def follow_then_stop(result: Result) -> None:
        assert result.body is not None
        for link in _HREF.findall(result.body.decode()):
            result.follow(link)
        # (The one seed is read at once; its end, then, before the stop.)
        await wait_until(lambda: input_read(fetcher.statistics()), 5, "the input's end")
        fetcher.stop()

    fetcher = Engine(
        network=Network(resolver=resolver()), handler=follow_then_stop, limits=Limits(concurrency=1)
    )
    async with fetcher, fetcher.stream([site.url(0)], journal=journal) as results:
        async for _ in results:
            if read_during:
                fetcher.statistics()
    return fetcher.statistics()


def input_read(stats: Statistics) -> bool:
    return stats.total is not None and not stats.total_is_estimate


async def admitted(journal: str) -> tuple[int, int]:
    store = SQLiteStore(journal)
    state = await store.open("<iterable>")
    await store.close()
    return state.counts.admitted, state.counts.pending


async def test_a_stopped_crawl_counts_the_follow_ups_it_admitted(
    site: TreeSite, tmp_path: Path
) -> None:
    """The run's total is the journal's, follow-ups admitted after the stop included: the
    summary's "pending" is what a resume runs."""
    journal = str(tmp_path / "crawl.journal")
    stats = await stopped_crawl(site, journal, read_during=False)
    total, pending = await admitted(journal)
    assert stats.interrupted
    assert total > 1 and pending == total - 1
    assert stats.total == total
    assert stats.total - stats.job_ok - stats.job_failed == pending


async def test_statistics_is_a_read_the_counts_do_not_depend_on_it(
    site: TreeSite, tmp_path: Path
) -> None:
    """Reading statistics() during a run changes nothing a later read shows."""
    read = await stopped_crawl(site, str(tmp_path / "read.journal"), read_during=True)
    unread = await stopped_crawl(site, str(tmp_path / "unread.journal"), read_during=False)
    fields = ("total", "total_is_estimate", "job_ok", "job_failed", "done", "skipped")
    assert [getattr(read, name) for name in fields] == [getattr(unread, name) for name in fields]


async def test_map_reads_the_callers_file_source_but_leaves_it_a_source_of_requests(
    server: Misbehaving, tmp_path: Path
) -> None:
    url = server.url("/ok")
    path = tmp_path / "urls.txt"
    path.write_text(f"{url}\n")
    source = shoal.FileSource(str(path))
    name = source.name

    async def echo(item: Any) -> Any:
        return item

    async with Engine(network=Network(resolver=resolver())) as engine:
        engine.map(echo, source)  # made (and never entered): the source is still the caller's
        assert source.name == name
        async with engine.stream(source) as results:
            fetched = [result async for result in results]
    assert [(r.url, r.status, r.error) for r in fetched] == [(url, 200, None)]

    items = tmp_path / "items.jsonl"
    items.write_text('{"n": 1}\n{"n": 2}\n')
    lines = shoal.FileSource(str(items))
    async with Engine() as engine, engine.map(echo, lines) as outcomes:
        values = sorted([outcome.value["n"] async for outcome in outcomes])
    assert values == [1, 2]
    assert lines.name == str(items)
    assert lines.position.items == 2  # (read through the view: the CLI's stdin note reads it)


async def test_a_failure_entering_the_engine_closes_its_bodies_folder(tmp_path: Path) -> None:
    bodies = tmp_path / "bodies"
    engine = Engine(
        network=Network(resolve={"a.test": "not an address"}),
        outputs=Outputs(bodies=str(bodies)),
    )
    with pytest.raises(ConfigError) as raised:
        async with engine:
            pass
    assert raised.value.option == "resolve"
    assert not (bodies / ".partial").exists()  # opened, then closed


async def test_leaving_the_engine_closes_the_rest_when_closing_the_session_fails(
    server: Misbehaving, tmp_path: Path
) -> None:
    """A cancellation that lands while the session closes (its connection open) still
    closes the bodies folder after it."""
    bodies = tmp_path / "bodies"
    engine = Engine(network=Network(resolver=resolver()), outputs=Outputs(bodies=str(bodies)))
    await engine.__aenter__()
    await engine.run([server.url("/ok")])
    assert (bodies / ".partial").exists()
    leaving = asyncio.create_task(engine.__aexit__(None, None, None))
    await asyncio.sleep(0)  # it starts closing the session
    assert not leaving.done()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert not (bodies / ".partial").exists()
