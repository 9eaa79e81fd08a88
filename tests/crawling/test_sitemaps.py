"""``--sitemaps``: robots.txt ``Sitemap:`` lines, ``/sitemap.xml``, indexes, gzip, caps."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from shoal.crawling.sitemaps import MAX_LOCATIONS, robots_sitemaps, sitemap_locations
from tests.command import RESOLVE, finish, start
from tests.helpers import read_records
from tests.servers import serve

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*locations: str) -> bytes:
    entries = "".join(
        f"<url><loc>{loc}</loc><lastmod>2026-01-01</lastmod></url>" for loc in locations
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {NS}>{entries}</urlset>'.encode()


def index(*locations: str) -> bytes:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locations)
    return f'<?xml version="1.0"?><sitemapindex {NS}>{entries}</sitemapindex>'.encode()


class SitemapSite:
    """A site whose pages are reachable only through its sitemaps (the home page links to
    nothing): robots.txt names an index of two sitemaps, one of them gzipped; /sitemap.xml
    names one more page; an index nests too deep to be followed all the way."""

    def __init__(self) -> None:
        self.served: Counter[str] = Counter()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://site.test:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.served[path] += 1
        u = self.url
        bodies: dict[str, tuple[bytes, str]] = {
            "/robots.txt": (
                f"User-agent: *\nSitemap: {u('/maps/index.xml')}\n".encode(),
                "text/plain",
            ),
            "/maps/index.xml": (
                index(u("/maps/a.xml"), u("/maps/b.xml.gz"), u("/maps/deep1.xml")),
                "application/xml",
            ),
            "/maps/a.xml": (urlset(u("/a1"), u("/a2"), u("/shared")), "application/xml"),
            "/maps/b.xml.gz": (gzip.compress(urlset(u("/b1"), u("/shared"))), "application/gzip"),
            "/sitemap.xml": (urlset(u("/from-guess")), "text/xml"),
            "/maps/deep1.xml": (index(u("/maps/deep2.xml")), "application/xml"),
            "/maps/deep2.xml": (index(u("/maps/deep3.xml")), "application/xml"),
            "/maps/deep3.xml": (urlset(u("/too-deep")), "application/xml"),
        }
        if path in bodies:
            body, kind = bodies[path]
            return web.Response(body=body, content_type=kind)
        return web.Response(
            text="<html><body>no links here</body></html>", content_type="text/html"
        )


@pytest.fixture
async def site() -> AsyncIterator[SitemapSite]:
    sitemap_site = SitemapSite()
    await sitemap_site.start()
    try:
        yield sitemap_site
    finally:
        await sitemap_site.stop()


async def test_sitemaps_seed_the_crawl(site: SitemapSite, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    args = ("crawl", site.url("/"), "-o", str(output), "--sitemaps", *RESOLVE)
    done = await finish(await start(*args), within_s=60)
    assert done.code == 0, done.stderr
    records = read_records(output)
    urls = [record["url"] for record in records]
    assert len(urls) == len(set(urls))
    pages = {"/", "/a1", "/a2", "/b1", "/shared", "/from-guess"}
    documents = {"/robots.txt", "/sitemap.xml", "/maps/index.xml", "/maps/a.xml"}
    documents |= {"/maps/b.xml.gz", "/maps/deep1.xml", "/maps/deep2.xml"}
    assert set(urls) == {site.url(path) for path in pages | documents}
    # Index nesting stops at three levels: deep2 (the third) is read, what it names is not.
    assert "/maps/deep3.xml" not in site.served
    by_url = {record["url"]: record for record in records}
    assert by_url[site.url("/maps/index.xml")]["meta"] == {"sitemap": 1}
    assert by_url[site.url("/robots.txt")]["meta"] == {"sitemap": "robots"}
    assert all(count == 1 for count in site.served.values())


async def test_without_the_option_no_sitemap_is_asked_for(
    site: SitemapSite, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    done = await finish(
        await start("crawl", site.url("/"), "-o", str(output), *RESOLVE), within_s=60
    )
    assert done.code == 0, done.stderr
    assert [record["url"] for record in read_records(output)] == [site.url("/")]
    assert set(site.served) == {"/"}


def test_a_sitemap_holds_at_most_the_protocol_s_count_of_locations() -> None:
    big = urlset(*(f"http://a.test/{n}" for n in range(MAX_LOCATIONS + 10)))
    is_index, locations = sitemap_locations(big)
    assert not is_index and len(locations) == MAX_LOCATIONS
    assert sitemap_locations(b"<html><a href=x>not a sitemap</a></html>") == (False, [])
    assert sitemap_locations(b"\x1f\x8b broken gzip") == (False, [])


def test_robots_sitemap_lines_resolve() -> None:
    text = "User-agent: *\nDisallow: /x\nSitemap: http://a.test/s.xml\nsitemap: /rel.xml\n"
    assert robots_sitemaps(text, "http://a.test/robots.txt") == [
        "http://a.test/s.xml",
        "http://a.test/rel.xml",
    ]
