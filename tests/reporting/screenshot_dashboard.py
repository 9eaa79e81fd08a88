"""Take the README's screenshot of the dashboard: a realistic job against the test server.

    python -m tests.reporting.screenshot_dashboard docs/dashboard.png

A few thousand requests over several host names (all on 127.0.0.1 through the tests'
resolver): mostly fine, some slow, some 404s, 503s that recover on a retry and some that
do not, a rate-limited host sending Retry-After, and a broken one (dropped connections,
bad status lines, a body cut short, requests that hang until their timeout). The page is
loaded in headless Chromium (``/usr/bin/chromium``) half a second after the job starts, given a
few seconds to fill its charts, and saved as a full-page PNG 1280 pixels wide; then the job
is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from shoal import Engine, FileSource, HostPolicy, Limits, Network, Politeness, RetryPolicy, Timeouts
from shoal.reporting.dashboard import Dashboard
from tests.conftest import resolver
from tests.servers import Misbehaving

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1280


def requests(server: Misbehaving, count: int, seed: int = 13) -> list[str]:
    """``count`` URLs in a realistic mix, shuffled (seeded: the same picture every time)."""
    pick = random.Random(seed)
    urls: list[str] = []
    for n in range(count):
        roll = pick.random()
        if roll < 0.42:
            host, path = "api.shop.test", f"/delay?s={pick.choice((0.02, 0.04, 0.08))}&n={n}"
        elif roll < 0.55:
            host, path = "img.cdn.test", f"/big?size={pick.randrange(4_000, 60_000)}&n={n}"
        elif roll < 0.68:
            host, path = "news.test", f"/delay?s={pick.choice((0.05, 0.15, 0.4))}&n={n}"
        elif roll < 0.76:
            host, path = "archive.test", f"/delay?s={pick.choice((0.3, 0.6, 1.2))}&n={n}"
        elif roll < 0.84:
            host, path = "api.shop.test", f"/status/404?n={n}"
        elif roll < 0.91:
            host, path = "mirror.test", f"/flaky/m{n}?fail=1&status=503"
        elif roll < 0.94:
            host, path = "mirror.test", f"/status/503?n={n}"
        elif roll < 0.97:
            host, path = "rate.limited.test", f"/retry-after/r{n}?status=429&after=1&fail=1"
        else:
            broken = ("/drop", "/bad-status", "/partial", "/status/500", "/hang")
            host, path = "legacy.test", f"{pick.choice(broken)}?n={n}"
        urls.append(server.url(path, host=host))
    return urls


async def take(path: Path, count: int, settle_s: float) -> None:
    server = Misbehaving()
    await server.start()
    engine = Engine(
        limits=Limits(concurrency=48, per_host=8),
        timeouts=Timeouts(total_s=1.0, connect_s=1.0, read_s=1.0),
        retry=RetryPolicy(retries=1, backoff_base_s=0.2, backoff_max_s=1.0),
        # The CDN is paced, else its quick answers are all over in the first second.
        politeness=Politeness(hosts={"img.cdn.test": HostPolicy(per_second=60, burst=4)}),
        network=Network(resolver=resolver()),
    )
    # A file of URLs, as the command line reads it: its line count is the first estimate
    # of the total, so the progress bar and the ETA have something to show.
    folder = tempfile.TemporaryDirectory(prefix="shoal-screenshot-")
    source = Path(folder.name) / "urls.txt"
    source.write_text("".join(url + "\n" for url in requests(server, count)))
    try:
        async with engine, Dashboard(engine) as dashboard:
            run = asyncio.create_task(engine.run(FileSource(str(source))))
            try:
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=CHROMIUM, headless=True
                    )
                    page = await browser.new_page(viewport={"width": WIDTH, "height": 900})
                    await asyncio.sleep(0.5)
                    await page.goto(dashboard.url, timeout=5_000)
                    await asyncio.sleep(settle_s)  # one snapshot a second: the charts fill
                    await page.screenshot(path=str(path), full_page=True)
                    await browser.close()
            finally:
                engine.abort()
                await asyncio.wait_for(run, 10)
    finally:
        await server.stop()
        folder.cleanup()
    print(f"{path}: {engine.statistics().done:,} of {count:,} requests done when stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds before the picture")
    arguments = parser.parse_args()
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(take(arguments.output, arguments.requests, arguments.settle))


if __name__ == "__main__":
    main()
