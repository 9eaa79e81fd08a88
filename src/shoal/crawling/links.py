"""Links in HTML: what a crawl follows from a page, parsed with selectolax (lexbor).

Navigation links are ``<a href>``, ``<area href>``, ``<frame src>`` and ``<iframe src>``;
with ``assets`` a page's requisites too: ``<img src>`` and each ``srcset`` candidate,
``<script src>``, every ``<link href>`` (stylesheets, icons, and the ``next``, ``search`` …
pages a site names there), ``<source>``, ``<video>``, ``<audio>``, ``<embed>``,
``<input type=image>``, and the ``url(...)`` and ``@import`` references of ``<style>``
elements, ``style`` attributes and stylesheets (fonts and images a page needs to render).
Links resolve against the page's ``<base href>`` when it has one, else its final URL (after
redirects); the frontier then drops the fragment, checks the URL and keys it by its
canonical form.

CSS references are found with a regular expression over the stylesheet with its comments
removed, not a CSS parser: the two forms are all a crawler needs, and a full tokenizer
would cost a pure-Python pass over every stylesheet.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser
from w3lib.html import strip_html5_whitespace
from yarl import URL

from shoal.crawling.sitemaps import MAX_LEVEL, robots_sitemaps, sitemap_locations
from shoal.request import Request
from shoal.result import Result

#: Content types parsed for links.
HTML_TYPES = ("text/html", "application/xhtml+xml")
CSS_TYPES = ("text/css",)
_NAVIGATION = "a[href], area[href], frame[src], iframe[src]"
_ASSETS = (
    "img[src], img[srcset], script[src], link[href], source[src], source[srcset],"
    " video[src], audio[src], embed[src], input[src], style, [style]"
)
_ATTRIBUTES = ("href", "src", "srcset")
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_REFERENCE = re.compile(
    r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"\s]*))\s*\)"""
    r"""|@import\s+(?:"([^"]*)"|'([^']*)')""",
    re.I,
)


def _media_type(content_type: str | None) -> str:
    return "" if content_type is None else content_type.partition(";")[0].strip().lower()


def is_html(content_type: str | None) -> bool:
    return _media_type(content_type) in HTML_TYPES


def is_css(content_type: str | None) -> bool:
    return _media_type(content_type) in CSS_TYPES


def css_references(css: str) -> list[str]:
    """The ``url(...)`` and ``@import "..."`` references of a stylesheet, in order."""
    found = []
    for match in _CSS_REFERENCE.finditer(_CSS_COMMENT.sub("", css)):
        reference = next((group for group in match.groups() if group is not None), "")
        reference = reference.strip()
        if reference and not reference.startswith(("data:", "#")):
            found.append(reference)
    return found


def extract_css_links(css: str, sheet_url: str) -> list[str]:
    """The absolute URLs a stylesheet at ``sheet_url`` refers to."""
    base = URL(sheet_url)
    return [_resolved(base, reference) for reference in css_references(css)]


def extract_links(html: str, page_url: str, *, assets: bool = False) -> list[str]:
    """The absolute URLs ``html`` (the page at ``page_url``) links to, in document order."""
    tree = LexborHTMLParser(html)
    base = URL(page_url)
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        href = strip_html5_whitespace(base_node.attributes.get("href") or "")
        if href:
            base = _join(base, href) or base
    found: list[str] = []
    for node in tree.css(_NAVIGATION + ", " + _ASSETS if assets else _NAVIGATION):
        tag = node.tag
        attributes = node.attributes
        if assets:
            style = node.text(deep=False) if tag == "style" else attributes.get("style")
            if style:
                found += [_resolved(base, ref) for ref in css_references(style)]
            if tag == "style":
                continue
        if tag == "input" and (attributes.get("type") or "").lower() != "image":
            continue
        for name in _ATTRIBUTES:
            value = attributes.get(name)
            if not value:
                continue
            if name == "srcset":
                candidates = [part.split()[0] for part in value.split(",") if part.split()]
            else:
                candidates = [strip_html5_whitespace(value)]
            for candidate in candidates:
                if candidate and not candidate.startswith("#"):
                    found.append(_resolved(base, candidate))
    return found


def _resolved(base: URL, link: str) -> str:
    url = _join(base, link)
    return link if url is None else str(url)


def _join(base: URL, link: str) -> URL | None:
    """``link`` resolved against ``base`` (yarl's join: a fifth of urljoin's time), or
    ``None`` when it is not a URL at all (the frontier then counts it as invalid)."""
    try:
        return base.join(URL(link))
    except ValueError:
        return None


class LinkFollower:
    """The handler of ``shoal crawl``: follows the links of each HTML page it is given
    (with ``assets``, of stylesheets too); with ``sitemaps``, also each seed's site's
    robots.txt ``Sitemap:`` lines and ``/sitemap.xml`` (see :mod:`.sitemaps`)."""

    def __init__(self, *, assets: bool = False, sitemaps: bool = False) -> None:
        self.assets = assets
        self.sitemaps = sitemaps

    async def __call__(self, result: Result) -> None:
        if result.body is None:
            return
        page = result.final_url or result.url
        meta = result.meta
        level = meta.get("sitemap") if isinstance(meta, dict) else None
        if level is not None:
            self._follow_sitemap(result, level, page)
            return
        if self.sitemaps and result.depth == 0:
            for path, mark in (("/robots.txt", "robots"), ("/sitemap.xml", 1)):
                result.follow(Request(str(URL(page).with_path(path)), meta={"sitemap": mark}))
        if is_html(result.content_type):
            links = extract_links(result.text(), page, assets=self.assets)
        elif self.assets and is_css(result.content_type):
            links = extract_css_links(result.text(), page)
        else:
            return
        for url in links:
            result.follow(url)

    @staticmethod
    def _follow_sitemap(result: Result, level: object, page: str) -> None:
        assert result.body is not None
        if result.status != 200:
            return
        if level == "robots":
            for sitemap in robots_sitemaps(result.text(), page):
                result.follow(Request(sitemap, meta={"sitemap": 1}))
            return
        is_index, locations = sitemap_locations(result.body)
        if is_index:
            if isinstance(level, int) and level < MAX_LEVEL:
                for location in locations:
                    result.follow(Request(location, meta={"sitemap": level + 1}))
            return
        for location in locations:
            result.follow(location)
