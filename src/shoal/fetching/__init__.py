"""Making requests: one aiohttp session, one attempt at a time, errors mapped to kinds."""

from shoal.fetching.descriptors import descriptors_needed, ensure_descriptors
from shoal.fetching.dns import CachingResolver, DNSStatistics
from shoal.fetching.failures import classify
from shoal.fetching.fetcher import Fetcher
from shoal.fetching.resolver import StaticResolver
from shoal.fetching.robots import Robots
from shoal.fetching.session import SessionSettings, open_session

__all__ = [
    "CachingResolver",
    "DNSStatistics",
    "Fetcher",
    "Robots",
    "SessionSettings",
    "StaticResolver",
    "classify",
    "descriptors_needed",
    "ensure_descriptors",
    "open_session",
]
