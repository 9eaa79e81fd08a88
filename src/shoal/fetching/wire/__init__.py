"""An HTTP/1.1 client of shoal's own behind the transport seam
(:mod:`shoal.fetching.transport`): asyncio protocols writing each request's bytes and
parsing responses with httptools (llhttp), pools of idle keep-alive connections per host,
no pipelining.

* :mod:`~shoal.fetching.wire.connection`: one connection, its parser, its body buffer
  (reading pauses while the reader is behind) and the attempt's deadline marks;
* :mod:`~shoal.fetching.wire.pool`: connections opened (resolver, happy eyeballs, TLS) and
  kept idle per key, capped per host and in all;
* :mod:`~shoal.fetching.wire.transport`: the :class:`WireTransport` (request bytes,
  redirects, the resend of a request whose reused connection closed first);
* :mod:`~shoal.fetching.wire.errors`: failures in the kinds and words of the aiohttp
  transport.
"""

from shoal.fetching.wire.transport import WireTransport

__all__ = ["WireTransport"]
