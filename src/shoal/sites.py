"""Sites: a host's registrable domain, by the public suffix list.

``www.example.co.uk`` and ``example.co.uk`` are one site, ``example.co.uk`` and
``other.co.uk`` two; an IP address or a name without a registrable domain (``localhost``)
is a site of its own. Cookies are kept per site, and a crawl's ``same-domain`` scope is
one site.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from publicsuffixlist import PublicSuffixList

#: Host names whose site is remembered, at most (then the memo starts again).
_MEMO = 65_536


@cache
def _suffixes() -> PublicSuffixList:
    """The public suffix list (its bundled copy), read once, when first needed."""
    return PublicSuffixList()


class Sites:
    """Host name to site, memoised."""

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}

    def __call__(self, host: str) -> str:
        site = self._memo.get(host)
        if site is None:
            if len(self._memo) >= _MEMO:
                self._memo.clear()
            site = self._memo[host] = site_of(host)
        return site


def site_of(host: str) -> str:
    """The site of ``host`` (lower case, without a trailing dot)."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return _suffixes().privatesuffix(host) or host
    return host
