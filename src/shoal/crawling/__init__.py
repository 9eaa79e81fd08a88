"""Following links: turning a final response's follow-ups into admitted requests."""

from shoal.crawling.frontier import Frontier, LinkCounts
from shoal.crawling.links import LinkFollower, extract_links, is_html

__all__ = ["Frontier", "LinkCounts", "LinkFollower", "extract_links", "is_html"]
