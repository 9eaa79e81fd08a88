"""Links in HTML: what a crawl follows from a page, parsed with selectolax (lexbor).

Navigation links are ``<a href>``, ``<area href>``, ``<frame src>`` and ``<iframe src>``;
with ``assets`` a page's requisites too: ``<img src>`` and each ``srcset`` candidate,
``<script src>``, ``<link href>`` of a stylesheet or an icon, ``<source>``, ``<video>``,
``<audio>``, ``<embed>`` and ``<input type=image>``. Links resolve against the page's
``<base href>`` when it has one, else its final URL (after redirects); the frontier then
drops the fragment, checks the URL and keys it by its canonical form.
"""

from __future__ import annotations

from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser
from w3lib.html import strip_html5_whitespace

from shoal.result import Result

#: Content types parsed for links.
HTML_TYPES = ("text/html", "application/xhtml+xml")
_NAVIGATION = "a[href], area[href], frame[src], iframe[src]"
_ASSETS = (
    "img[src], img[srcset], script[src], link[href], source[src], source[srcset],"
    " video[src], audio[src], embed[src], input[src]"
)
_LINK_ASSETS = frozenset({"stylesheet", "icon", "shortcut", "apple-touch-icon"})
_ATTRIBUTES = ("href", "src", "srcset")


def is_html(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() in HTML_TYPES


def extract_links(html: str, page_url: str, *, assets: bool = False) -> list[str]:
    """The absolute URLs ``html`` (the page at ``page_url``) links to, in document order."""
    tree = LexborHTMLParser(html)
    base = page_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        href = strip_html5_whitespace(base_node.attributes.get("href") or "")
        if href:
            base = urljoin(page_url, href)
    found: list[str] = []
    for node in tree.css(_NAVIGATION + ", " + _ASSETS if assets else _NAVIGATION):
        tag = node.tag
        attributes = node.attributes
        if tag == "link":
            rel = set((attributes.get("rel") or "").lower().split())
            if not rel & _LINK_ASSETS:
                continue
        elif tag == "input" and (attributes.get("type") or "").lower() != "image":
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
                    found.append(urljoin(base, candidate))
    return found


class LinkFollower:
    """The handler of ``shoal crawl``: follows the links of each HTML page it is given."""

    def __init__(self, *, assets: bool = False) -> None:
        self.assets = assets

    async def __call__(self, result: Result) -> None:
        if result.body is None or not is_html(result.content_type):
            return
        page = result.final_url or result.url
        for url in extract_links(result.text(), page, assets=self.assets):
            result.follow(url)
