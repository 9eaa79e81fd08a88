"""Which HTTP proxy, if any, a request goes through.

A proxy given to the engine (``--proxy``) serves every request. Without one, the
environment's are used as curl, wget and Python's own ``urllib`` read them: ``http_proxy``
for ``http://`` URLs, ``https_proxy`` for ``https://`` ones, ``all_proxy`` for either when
its own is not set, each also in upper case (the lower-case one wins), and ``no_proxy``
(a comma-separated list of host names, domain suffixes, addresses, ``host:port``, or ``*``)
names the hosts that are reached directly. The variables are parsed and matched by
``urllib.request`` (:func:`~urllib.request.getproxies_environment`,
:func:`~urllib.request.proxy_bypass_environment`), read once when the engine is made.
"""

from __future__ import annotations

import urllib.request

from yarl import URL

from shoal.errors import ConfigError

#: Host names whose way (a proxy or none) is remembered, at most.
_CACHE_LIMIT = 4096


def proxy_url(text: str, source: str = "proxy") -> str:
    """A proxy's URL: ``host:port`` without a scheme is taken as ``http://`` (as curl
    does); a scheme other than ``http`` or ``https`` is refused. ``source`` names where the
    text came from, for the error (the ``proxy`` setting, or an environment variable)."""
    value = text.strip()
    if "://" not in value:
        value = "http://" + value
    try:
        url = URL(value)
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        if source == "proxy":
            raise ConfigError("proxy", f"{text!r} is not an http:// or https:// URL")
        raise ConfigError(
            "proxy_env",
            f"{source}={text!r} in the environment is not an http:// or https:// proxy URL"
            " (give a proxy, or ignore the environment's)",
        )
    return value


class Proxies:
    """The proxy for each request (see the module's docstring).

    ``proxy`` is the engine's: every request goes through it, or ``""`` for none at all,
    the environment ignored (as ``curl --proxy ''``). ``environment`` says whether the
    environment's variables are read when ``proxy`` is ``None``.
    """

    def __init__(self, proxy: str | None = None, *, environment: bool = True) -> None:
        self.fixed = None if not proxy else proxy_url(proxy)
        found: dict[str, str] = {}
        if proxy is None and environment:
            found = urllib.request.getproxies_environment()
        self._bypass = {"no": found["no"]} if "no" in found else {}
        self._by_scheme: dict[str, str] = {}
        for scheme in ("http", "https"):
            name = scheme if scheme in found else "all"
            if found.get(name):
                self._by_scheme[scheme] = proxy_url(found[name], f"{name}_proxy")
        self._cache: dict[tuple[str, str], str | None] = {}
        #: Whether the proxy depends on the URL (the environment's proxies), rather than
        #: being one for every request or none at all (:attr:`fixed`).
        self.varies = self.fixed is None and bool(self._by_scheme)

    @property
    def any(self) -> bool:
        """Whether any request may go through a proxy."""
        return self.fixed is not None or bool(self._by_scheme)

    @property
    def environment(self) -> dict[str, str]:
        """The proxies taken from the environment, by scheme."""
        return dict(self._by_scheme)

    def for_url(self, url: URL) -> str | None:
        """The proxy ``url`` goes through, or ``None`` to go directly."""
        if self.fixed is not None or not self._by_scheme:
            return self.fixed
        proxy = self._by_scheme.get(url.scheme)
        host = url.raw_host
        if proxy is None or host is None or not self._bypass:
            return proxy
        key = (url.scheme, f"{host}:{url.port}")
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        # Not in typeshed's stubs, but part of urllib.request since Python 2.
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        direct = bool(bypass(key[1], self._bypass))
        way = self._cache[key] = None if direct else proxy
        return way
