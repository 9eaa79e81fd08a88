"""Sitemaps (``shoal crawl --sitemaps``): the ``Sitemap:`` lines of robots.txt (read with
protego) and sitemap documents, urlsets and sitemap indexes, plain or gzipped.

The documents are fetched by shoal itself, as follow-ups of a seed, so they have records,
retries and politeness like any request; the crawl's ``meta`` marks them:
``{"sitemap": "robots"}`` for a site's robots.txt, ``{"sitemap": N}`` for a sitemap N
levels below it (a seed's ``/sitemap.xml`` is level 1). Caps: a document's decoded size
(the sitemap protocol's 50 MB, and ``--max-bytes`` before it), the locations taken from
one document (the protocol's 50,000), and the nesting of indexes (:data:`MAX_LEVEL`).
The ``<loc>`` elements are read with selectolax, which takes XML's few forms a sitemap
uses (elements, namespaces, CDATA) without resolving entities, so no entity expansion can
grow a document.
"""

from __future__ import annotations

import gzip
import zlib

from protego import Protego
from selectolax.lexbor import LexborHTMLParser
from yarl import URL

#: The sitemap protocol's limits on one document: decoded size and locations.
MAX_BYTES = 50 * 1024 * 1024
MAX_LOCATIONS = 50_000
#: Sitemap indexes followed this many levels deep at most (an index names sitemaps; the
#: protocol allows no index of indexes, but sites do it, so a little room).
MAX_LEVEL = 3


def robots_sitemaps(text: str, robots_url: str) -> list[str]:
    """The sitemaps a robots.txt names, absolute."""
    base = URL(robots_url)
    found = []
    for location in Protego.parse(text).sitemaps:
        try:
            found.append(str(base.join(URL(location.strip()))))
        except ValueError:
            continue
    return found


def sitemap_locations(body: bytes) -> tuple[bool, list[str]]:
    """Whether ``body`` is a sitemap index, and the ``<loc>`` values it holds (at most
    :data:`MAX_LOCATIONS`); ``(False, [])`` for anything that is not a sitemap."""
    if body[:2] == b"\x1f\x8b":
        body = _gunzip(body)
    head = body[:4096].lower()
    is_index = b"<sitemapindex" in head
    if not is_index and b"<urlset" not in head:
        return False, []
    tree = LexborHTMLParser(body.decode("utf-8", errors="replace"))
    locations = []
    for node in tree.css("loc"):
        text = node.text(strip=True)
        if text.startswith("<![CDATA[") and text.endswith("]]>"):
            text = text[9:-3].strip()
        if text:
            locations.append(text.replace("&amp;", "&"))
            if len(locations) >= MAX_LOCATIONS:
                break
    return is_index, locations


def _gunzip(body: bytes) -> bytes:
    """A gzipped sitemap's content, cut at :data:`MAX_BYTES`."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return decompressor.decompress(body, MAX_BYTES)
    except (zlib.error, gzip.BadGzipFile):
        return b""
