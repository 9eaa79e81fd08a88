"""Link extraction from HTML: which tags and attributes, <base>, whitespace, srcset."""

from __future__ import annotations

import pytest

from shoal.crawling import extract_links, is_html

PAGE = "http://a.test/dir/page.html"
HTML = """<!doctype html>
<html><head>
<link rel="stylesheet" href="/css/site.css">
<link rel="icon" href="favicon.ico">
<link rel="next" href="page2.html">
<script src="js/app.js"></script>
</head><body>
<a href="other.html">relative</a>
<a href="  /abs.html\n">spaces around</a>
<a href="http://b.test/x">another host</a>
<a href="#section">same page</a>
<a href="sub/?q=1#frag">query and fragment</a>
<a>no href</a>
<area href="map.html">
<iframe src="frame.html"></iframe>
<img src="img/a.png" srcset="img/a-2x.png 2x, img/a-3x.png 3x">
<picture><source srcset="img/b.webp"></picture>
<video src="v.mp4"></video>
<input type="image" src="button.png"><input type="text" src="not-this.png">
</body></html>"""


def test_navigation_links_only_by_default() -> None:
    assert extract_links(HTML, PAGE) == [
        "http://a.test/dir/other.html",
        "http://a.test/abs.html",
        "http://b.test/x",
        "http://a.test/dir/sub/?q=1#frag",
        "http://a.test/dir/map.html",
        "http://a.test/dir/frame.html",
    ]


def test_assets_add_requisites() -> None:
    found = extract_links(HTML, PAGE, assets=True)
    assets = set(found) - set(extract_links(HTML, PAGE))
    assert assets == {
        "http://a.test/css/site.css",
        "http://a.test/dir/favicon.ico",
        "http://a.test/dir/js/app.js",
        "http://a.test/dir/img/a.png",
        "http://a.test/dir/img/a-2x.png",
        "http://a.test/dir/img/a-3x.png",
        "http://a.test/dir/img/b.webp",
        "http://a.test/dir/v.mp4",
        "http://a.test/dir/button.png",
    }
    assert "http://a.test/dir/page2.html" not in found  # rel=next is not a requisite


def test_base_href_is_the_base() -> None:
    html = '<base href="http://c.test/root/"><a href="x.html">x</a><a href="/y">y</a>'
    assert extract_links(html, PAGE) == ["http://c.test/root/x.html", "http://c.test/y"]
    relative_base = '<base href="../up/"><a href="x.html">x</a>'
    assert extract_links(relative_base, PAGE) == ["http://a.test/up/x.html"]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/html", True),
        ("text/html; charset=utf-8", True),
        ("Application/XHTML+XML", True),
        ("text/plain", False),
        ("image/png", False),
        (None, False),
    ],
)
def test_only_html_is_parsed(content_type: str | None, expected: bool) -> None:
    assert is_html(content_type) is expected
