"""Following links: turning a final response's follow-ups into admitted requests.

``frontier`` is the gate every follow-up passes (the engine's); ``links`` and ``sitemaps``
are what ``shoal crawl`` reads pages with (imported by it alone: their parsers need not
load for a fetch).
"""

from shoal.crawling.frontier import Frontier, LinkCounts

__all__ = ["Frontier", "LinkCounts"]
