"""Link extraction from HTML: which tags and attributes, <base>, whitespace, srcset."""

from __future__ import annotations

import pytest

from shoal.crawling.links import extract_css_links, extract_links, is_html

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
        "http://a.test/dir/page2.html",  # every <link>, as wget2 -r takes them
    }


def test_assets_include_what_styles_refer_to() -> None:
    html = """<style>@import "print.css"; body { background: url('img/bg.png') }
    /* url(commented.png) */</style><p style="background:url(dot.gif)">x</p>"""
    assert extract_links(html, PAGE) == []
    assert extract_links(html, PAGE, assets=True) == [
        "http://a.test/dir/print.css",
        "http://a.test/dir/img/bg.png",
        "http://a.test/dir/dot.gif",
    ]


def test_stylesheets_give_their_imports_and_urls() -> None:
    css = """@import url("base.css"); @import 'theme.css';
    .a { background: url( ../img/a.png ) } .b { src: url(data:font/woff2;base64,AAAA) }
    /* @import "old.css"; */ .c { background: url("/abs/c.svg#frag") }"""
    assert extract_css_links(css, "http://a.test/static/css/site.css") == [
        "http://a.test/static/css/base.css",
        "http://a.test/static/css/theme.css",
        "http://a.test/static/img/a.png",
        "http://a.test/abs/c.svg#frag",
    ]


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
