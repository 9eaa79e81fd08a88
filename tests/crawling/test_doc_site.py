"""The documentation site fixture itself: nginx serves it, and wget2's reference crawl of it
is plausible and follows only navigational links when asked to."""

from __future__ import annotations

import http.client
import re
from html.parser import HTMLParser

from tests.crawling.doc_site import (
    DOC_ROOT,
    DOC_SEED,
    NAVIGATION,
    WGET2_URL_ATTRIBUTES,
    doc_site,  # noqa: F401 (the fixture)
    reference_crawl,
    wget2_ignore_tags,
)
from tests.nginx_server import LoggedRequest, NginxSite


def test_the_site_serves_the_seed_and_logs_it(doc_site: NginxSite) -> None:  # noqa: F811
    connection = http.client.HTTPConnection("127.0.0.1", doc_site.port, timeout=10)
    try:
        connection.request("GET", DOC_SEED)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert b"Flask" in body
    doc_site.sync_log()
    assert doc_site.requests()[-1] == LoggedRequest("GET", DOC_SEED, 200)


def test_the_reference_crawl_is_plausible(doc_site: NginxSite) -> None:  # noqa: F811
    pages = reference_crawl(doc_site, DOC_SEED, assets=False)
    everything = reference_crawl(doc_site, DOC_SEED, assets=True)

    assert doc_site.url + DOC_SEED.lstrip("/") in pages
    assert len(pages) > 50  # 74 with python-flask-doc 2.2.2-3
    assert all(url.startswith(doc_site.url) for url in everything)
    assert all(url.endswith(".html") for url in pages)
    assert {"patterns/index.html", "tutorial/index.html", "deploying/index.html"} <= {
        url.removeprefix(doc_site.url) for url in pages
    }
    # Page requisites add the stylesheets (and those they @import), scripts and images,
    # and the one page only a <link rel=search> leads to.
    assert pages < everything
    extras = {url.removeprefix(doc_site.url) for url in everything - pages}
    assert {"_static/flask.css", "_static/pocoo.css", "_static/basic.css"} <= extras
    assert {"_static/jquery.js", "_static/flask-icon.png", "search.html"} <= extras
    assert any(path.startswith("_images/") for path in extras)


class _UrlAttributes(HTMLParser):
    """The (element, attribute) pairs that wget2 may take a URL from, and <style> texts."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: set[tuple[str, str]] = set()
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.pairs |= {(tag, name) for name, value in attrs if name in WGET2_URL_ATTRIBUTES}
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def test_navigation_only_leaves_wget2_no_other_link_in_the_tree(doc_site: NginxSite) -> None:  # noqa: F811
    """``assets=False`` means navigational links only: wget2 ignores every other element or
    attribute that the pages carry a URL in, and no <style> element holds one (those it
    cannot ignore)."""
    ignored = set(wget2_ignore_tags().split(","))
    parser = _UrlAttributes()
    for page in DOC_ROOT.rglob("*.html"):
        parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    followed = {
        (tag, attr)
        for tag, attr in parser.pairs
        if tag not in ignored and f"{tag}/{attr}" not in ignored
    }
    assert followed <= set(NAVIGATION.items())
    assert ("a", "href") in followed
    assert not [style for style in parser.styles if re.search(r"url\(|@import", style)]
