"""Follow-ups: a handler's ``result.follow`` grows the job, against a generated site."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shoal import Crawl, Engine, Limits, Network, Request, Result
from shoal.store import SQLiteStore
from tests.conftest import resolver
from tests.helpers import engine_options
from tests.site_server import TreeSite, follow_links, serving


@pytest.fixture
async def site() -> AsyncIterator[TreeSite]:
    async with serving(pages=200, fanout=4) as tree:
        yield tree


def engine(**options: Any) -> Engine:
    options.setdefault("limits", Limits(concurrency=8, per_host=4))
    return Engine(handler=follow_links, **engine_options({"resolver": resolver(), **options}))


async def crawl(site: TreeSite, **options: Any) -> tuple[list[Result], Engine]:
    async with engine(**options) as fetcher, fetcher.stream([site.url(0)]) as stream:
        results = [result async for result in stream]
    return results, fetcher


async def test_every_page_is_fetched_once_with_its_depth_and_parent(site: TreeSite) -> None:
    results, fetcher = await crawl(site)
    by_url = {result.url: result for result in results}
    assert len(by_url) == len(results) == site.pages
    assert all(count == 1 for count in site.served.values())
    assert len(site.served) == site.pages
    for page in range(site.pages):
        result = by_url[site.url(page)]
        assert result.status == 200
        assert result.depth == site.depth(page)
        expected_parent = None if page == 0 else site.url((page - 1) // site.fanout)
        assert result.parent == expected_parent
    links = fetcher.statistics().links
    # Each page: its children, parent, root, itself with a fragment, mailto, another host.
    assert links.found == sum(len(site.children(p)) + 5 for p in range(site.pages))
    assert links.admitted == site.pages - 1
    assert links.out_of_scope == site.pages  # other.test
    assert links.invalid == site.pages  # mailto:
    assert links.duplicate == links.found - links.admitted - 2 * site.pages
    record = results[0].to_record()
    assert (record["depth"], record["parent"]) == (0, None)


async def test_max_depth_stops_following_deeper(site: TreeSite) -> None:
    results, fetcher = await crawl(site, crawl=Crawl(max_depth=2))
    depths = sorted(result.depth for result in results)
    assert depths == [0] + [1] * 4 + [2] * 16
    assert fetcher.statistics().links.too_deep > 0


async def test_max_requests_is_an_exact_budget(site: TreeSite) -> None:
    results, fetcher = await crawl(site, crawl=Crawl(max_requests=37))
    assert len(results) == 37
    assert len(site.served) == 37
    assert fetcher.statistics().links.over_budget > 0


async def test_scope_all_follows_other_hosts_and_patterns_filter(site: TreeSite) -> None:
    results, fetcher = await crawl(site, crawl=Crawl(scope="all", max_depth=1, exclude=(r"/p/3$",)))
    urls = {result.url for result in results}
    assert site.url(0, host="other.test") in urls
    assert site.url(3) not in urls
    assert {site.url(1), site.url(2), site.url(4)} <= urls
    assert fetcher.statistics().links.excluded == 1


async def test_include_keeps_only_matching_links(site: TreeSite) -> None:
    results, _ = await crawl(site, crawl=Crawl(include=(r"/p/[0-4]$",)))
    assert sorted(result.url for result in results) == sorted(site.url(n) for n in range(5))


async def test_a_request_object_can_be_followed(site: TreeSite) -> None:
    async def handler(result: Result) -> None:
        if result.depth == 0:
            result.follow(Request("/p/1", method="GET", meta={"from": "root"}))

    async with Engine(network=Network(resolver=resolver()), handler=handler) as fetcher:
        results = [r async for r in _stream(fetcher, [site.url(0)])]
    child = next(r for r in results if r.depth == 1)
    assert (child.url, child.meta, child.parent) == (site.url(1), {"from": "root"}, site.url(0))


async def _stream(fetcher: Engine, urls: list[str]) -> AsyncIterator[Result]:
    async with fetcher.stream(urls) as stream:
        async for result in stream:
            yield result


async def test_the_frontier_is_in_the_journal_and_a_stopped_crawl_resumes(
    site: TreeSite, tmp_path: Path
) -> None:
    journal = str(tmp_path / "crawl.journal")
    seen: list[Result] = []
    async with engine() as fetcher, fetcher.stream([site.url(0)], journal=journal) as stream:
        async for result in stream:
            seen.append(result)
            if len(seen) == 30:
                fetcher.stop()
    first = len(seen)
    assert 30 <= first < site.pages
    async with engine() as fetcher, fetcher.stream([site.url(0)], journal=journal) as stream:
        seen += [result async for result in stream]
    urls = [result.url for result in seen]
    assert len(urls) == len(set(urls)) == site.pages
    assert all(count == 1 for count in site.served.values())
    # What the journal holds: every page, once, with its depth.
    store = SQLiteStore(journal)
    await store.open("<iterable>")
    records = [orjson.loads(line) for _, line in await store.records_after(0, 10_000)]
    await store.close()
    assert sorted(r["url"] for r in records) == sorted(site.url(n) for n in range(site.pages))
