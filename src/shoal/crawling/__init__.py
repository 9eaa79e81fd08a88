"""Following links: turning a final response's follow-ups into admitted requests."""

from shoal.crawling.frontier import Frontier, LinkCounts

__all__ = ["Frontier", "LinkCounts"]
