"""Moved: the capture values are :mod:`shoal.capture` now, and the protocol that fills them
is the aiohttp transport's (:mod:`shoal.fetching.aiohttp_transport`). These names stay for
code written before the move."""

from shoal.capture import Budget, Capture, Exchange, header_end

__all__ = ["Budget", "Capture", "Exchange", "header_end"]
