"""A generated web site for crawling tests: a tree of HTML pages made on the fly.

Page ``/p/N`` (N from 0 to ``pages - 1``) links to its children ``/p/(F*N+1)`` …
``/p/(F*N+F)`` (F the fan-out; those below ``pages``), back to its parent and to the root
(links the crawl already holds), to itself with a fragment, to a page on another host
(``other.test``, out of the same-host scope) and to a ``mailto:`` address. Links are
relative, absolute and root-relative in turn, so resolving them is exercised too. The
server counts each path it serves, so a test can tell a page fetched twice.

Run on its own (``python -m tests.site_server PAGES FANOUT``) it serves until killed and
prints its port, for a crawl run in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import web

from shoal import Result
from tests.servers import serve


class TreeSite:
    """``await start()``; ``url(n)``; ``await stop()``. ``served`` counts paths."""

    def __init__(self, pages: int, fanout: int = 4, *, delay_s: float = 0.0) -> None:
        self.pages = pages
        self.fanout = fanout
        self.delay_s = delay_s
        self.served: Counter[str] = Counter()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, page: int = 0, host: str = "site.test") -> str:
        return f"http://{host}:{self.port}/p/{page}"

    def children(self, page: int) -> list[int]:
        first = self.fanout * page + 1
        return [n for n in range(first, first + self.fanout) if n < self.pages]

    def depth(self, page: int) -> int:
        depth = 0
        while page:
            page = (page - 1) // self.fanout
            depth += 1
        return depth

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/p/{n}", self._page)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _page(self, request: web.Request) -> web.StreamResponse:
        self.served[request.path] += 1
        page = int(request.match_info["n"])
        if not 0 <= page < self.pages:
            raise web.HTTPNotFound()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(text=self.html(page, request.host), content_type="text/html")

    def html(self, page: int, host: str) -> str:
        links = []
        for i, child in enumerate(self.children(page)):
            style = i % 3
            if style == 0:
                links.append(f"{child}")  # relative to /p/
            elif style == 1:
                links.append(f"/p/{child}")
            else:
                links.append(f"http://{host}/p/{child}")
        parent = (page - 1) // self.fanout if page else 0
        links += [f"/p/{parent}", "/p/0", f"{page}#top", "mailto:someone@site.test"]
        links.append(f"http://other.test:{self.port}/p/{page}")
        anchors = "".join(f'<a href="{link}">{link}</a>\n' for link in links)
        return f"<!doctype html><title>page {page}</title><body>\n{anchors}</body>"


@contextlib.asynccontextmanager
async def serving(pages: int, fanout: int = 4, *, delay_s: float = 0.0) -> AsyncIterator[TreeSite]:
    """A :class:`TreeSite` started for the block and stopped after it (the fixtures' body)."""
    site = TreeSite(pages, fanout, delay_s=delay_s)
    await site.start()
    try:
        yield site
    finally:
        await site.stop()


_HREF = re.compile(r'href="([^"]+)"')


async def follow_links(result: Result) -> None:
    """A handler that follows every ``href`` of a page."""
    assert result.body is not None
    for link in _HREF.findall(result.body.decode()):
        result.follow(link)


async def _main(pages: int, fanout: int) -> None:
    site = TreeSite(pages, fanout)
    await site.start()
    print(site.port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await site.stop()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2])))
