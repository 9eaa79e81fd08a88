"""Peer: Scrapy crawling a site from one seed, same host only, breadth-first, its records
(url, status, depth) as JSON lines. ``--jobdir DIR`` keeps its queue and seen-set on disk
(Scrapy's own resumable mode: the nearest to shoal's journal).

    python bench/peers/scrapy_crawl.py SEED OUTPUT CONCURRENCY [--jobdir DIR]
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar
from urllib.parse import urlsplit

from scrapy.crawler import CrawlerProcess
from scrapy.http import Response
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule


def main() -> None:
    seed, output, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    jobdir = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--jobdir" else None
    host = urlsplit(seed).hostname or ""

    class Site(CrawlSpider):
        name = "site"
        allowed_domains: ClassVar[list[str]] = [host]
        start_urls: ClassVar[list[str]] = [seed]
        rules = (Rule(LinkExtractor(), callback="parse_page", follow=True),)

        def parse_start_url(self, response: Response, **kwargs: Any) -> Any:
            return self.parse_page(response)

        def parse_page(self, response: Response) -> Any:
            yield {
                "url": response.url,
                "status": response.status,
                "depth": response.meta.get("depth", 0),
            }

    settings: dict[str, Any] = {
        "LOG_LEVEL": "ERROR",
        "ROBOTSTXT_OBEY": False,
        "TELNETCONSOLE_ENABLED": False,
        "COOKIES_ENABLED": False,
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "DOWNLOAD_DELAY": 0,
        # Breadth-first, as shoal crawls.
        "DEPTH_PRIORITY": 1,
        "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
        "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        "FEEDS": {output: {"format": "jsonlines"}},
    }
    if jobdir is not None:
        settings["JOBDIR"] = jobdir
    process = CrawlerProcess(settings)
    process.crawl(Site)
    process.start()


if __name__ == "__main__":
    main()
