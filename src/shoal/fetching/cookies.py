"""Cookies for a job that asks for them (``--cookies``): one jar per site, memory bounded.

A site is a host's registrable domain (``www.example.co.uk`` and ``example.co.uk`` are
one site, ``example.co.uk`` and ``other.co.uk`` are two), taken from the public suffix
list; an IP address or a name without a registrable domain (``localhost``) is a site of
its own. Each site has its own aiohttp :class:`~aiohttp.CookieJar`, which applies the
cookie rules (domain and path matching, ``Secure``, expiry, aiohttp's own limits per
domain), so a cookie can never reach another site, not even through a ``Domain`` set to a
public suffix. A site gets a jar only once it sets a cookie.

The jars live in one least-recently-used order. Whenever their estimated size passes
``max_bytes`` or their number passes ``max_sites``, the sites used longest ago lose their
cookies, so memory stays bounded whatever the number of hosts in the job; a site that is
in use (its cookies sent or set just now) is the last to go.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Iterator
from http.cookies import BaseCookie, Morsel, SimpleCookie
from types import MappingProxyType

from aiohttp import CookieJar
from aiohttp.abc import AbstractCookieJar, ClearCookiePredicate
from aiohttp.typedefs import LooseCookies
from yarl import URL

from shoal.sites import Sites

#: Defaults: the jars' estimated size, and how many sites have one, at most.
MAX_BYTES = 64 * 1024 * 1024
MAX_SITES = 100_000
#: The estimate: an empty jar, and one cookie besides its name and value (measured with
#: tracemalloc on aiohttp 3.14: about 1.0 KB and 2.0 KB).
_JAR_BYTES = 1024
_COOKIE_BYTES = 2048
_NO_URL = URL()


def _size(jar: CookieJar) -> int:
    """The estimated memory of ``jar`` and its cookies."""
    return _JAR_BYTES + sum(
        _COOKIE_BYTES + 2 * (len(morsel.key) + len(morsel.value)) for morsel in jar
    )


class SiteCookieJar(AbstractCookieJar):
    """aiohttp's cookie jar interface over one bounded jar per site (see the module)."""

    def __init__(
        self,
        *,
        max_bytes: int = MAX_BYTES,
        max_sites: int = MAX_SITES,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(loop=loop)
        self.max_bytes = max_bytes
        self.max_sites = max_sites
        self._site = Sites()
        self._jars: OrderedDict[str, CookieJar] = OrderedDict()
        self._sizes: dict[str, int] = {}
        #: The jars' estimated size now (bytes).
        self.size = 0
        #: Sites whose cookies were dropped to keep within the bounds.
        self.evicted = 0

    # -- what aiohttp asks ---------------------------------------------------------------------

    @property
    def unsafe(self) -> bool:
        return True  # a host given by its IP address keeps its cookies too (host-only)

    @property
    def quote_cookie(self) -> bool:
        return True

    def update_cookies(self, cookies: LooseCookies, response_url: URL = _NO_URL) -> None:
        host = response_url.raw_host
        if not host:
            return  # cookies not set by a response belong to no site: none are kept
        site = self._site(host)
        jar = self._jars.get(site)
        if jar is None:
            jar = self._jars[site] = CookieJar(unsafe=True, loop=self._loop)
        else:
            self._jars.move_to_end(site)
        jar.update_cookies(cookies, response_url)
        if not len(jar):  # none was kept (expired, or refused by the cookie rules)
            self._drop(site)
            return
        self._resize(site, jar)
        self._keep_within_bounds()

    def filter_cookies(self, request_url: URL) -> BaseCookie[str]:
        host = request_url.raw_host
        jar = None
        if host:
            site = self._site(host)
            jar = self._jars.get(site)
        if jar is None:
            return BaseCookie()
        self._jars.move_to_end(site)
        return jar.filter_cookies(request_url)

    def clear(self, predicate: ClearCookiePredicate | None = None) -> None:
        for jar in self._jars.values():
            jar.clear(predicate)
        self._resize_all()

    def clear_domain(self, domain: str) -> None:
        for jar in self._jars.values():
            jar.clear_domain(domain)
        self._resize_all()

    @property
    def cookies(self) -> MappingProxyType[tuple[str, str], SimpleCookie]:
        merged: dict[tuple[str, str], SimpleCookie] = {}
        for jar in self._jars.values():
            merged.update(jar.cookies)
        return MappingProxyType(merged)

    @property
    def host_only_cookies(self) -> frozenset[tuple[str, str, str]]:
        return frozenset(
            itertools.chain.from_iterable(jar.host_only_cookies for jar in self._jars.values())
        )

    def __len__(self) -> int:
        return sum(len(jar) for jar in self._jars.values())

    def __iter__(self) -> Iterator[Morsel[str]]:
        for jar in list(self._jars.values()):
            yield from jar

    # -- what shoal reads ------------------------------------------------------------------------

    @property
    def sites(self) -> int:
        """Sites holding cookies now."""
        return len(self._jars)

    # -- inside ----------------------------------------------------------------------------------

    def _resize(self, site: str, jar: CookieJar) -> None:
        size = _size(jar)
        self.size += size - self._sizes.get(site, 0)
        self._sizes[site] = size

    def _resize_all(self) -> None:
        for site, jar in list(self._jars.items()):
            if len(jar):
                self._resize(site, jar)
            else:
                self._drop(site)

    def _drop(self, site: str) -> None:
        del self._jars[site]
        self.size -= self._sizes.pop(site, 0)

    def _keep_within_bounds(self) -> None:
        jars = self._jars
        while len(jars) > 1 and (self.size > self.max_bytes or len(jars) > self.max_sites):
            oldest = next(iter(jars))
            self._drop(oldest)
            self.evicted += 1
