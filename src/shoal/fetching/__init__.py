"""Making requests: one attempt at a time through a transport, errors mapped to kinds."""

from shoal.fetching.aiohttp_transport import AiohttpTransport
from shoal.fetching.descriptors import descriptors_needed, ensure_descriptors
from shoal.fetching.dns import CachingResolver, DNSStatistics
from shoal.fetching.failures import classify
from shoal.fetching.fetcher import BodyFiles, Fetcher
from shoal.fetching.resolver import StaticResolver
from shoal.fetching.robots import Robots
from shoal.fetching.session import SessionSettings
from shoal.fetching.transport import Incoming, Outgoing, Transport, TransportFailure
from shoal.fetching.wire import WireTransport


def open_transport(settings: SessionSettings) -> Transport:
    """The transport an engine sends its requests through: aiohttp's, or shoal's own
    (``wire``), as ``settings.transport`` says."""
    if settings.transport == "wire":
        return WireTransport(settings)
    return AiohttpTransport(settings)


__all__ = [
    "BodyFiles",
    "CachingResolver",
    "DNSStatistics",
    "Fetcher",
    "Incoming",
    "Outgoing",
    "Robots",
    "SessionSettings",
    "StaticResolver",
    "Transport",
    "TransportFailure",
    "classify",
    "descriptors_needed",
    "ensure_descriptors",
    "open_transport",
]
