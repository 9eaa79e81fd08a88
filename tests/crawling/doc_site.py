"""A real documentation site for crawl tests, and wget2's crawl of it as the reference.

The site is the HTML documentation that Debian's ``python-flask-doc`` package installs
(:data:`DOC_ROOT`, 77 Sphinx pages in four folders that link to each other with relative
URLs, plus stylesheets that ``@import`` each other, scripts and images) served by a real
nginx on 127.0.0.1 (:class:`tests.nginx_server.NginxSite`). :func:`reference_crawl` runs
Debian's wget2 recursively over it and returns the URLs that nginx answered with 200, so
that a test can check that ``shoal crawl`` finds exactly the same ones::

    def test_crawl_matches_wget2(doc_site: NginxSite) -> None:
        expected = reference_crawl(doc_site, DOC_SEED, assets=False)
        ...

How wget2 1.99.1 (Debian 12) picks the links it follows, and so what the reference means:

* Any attribute named as in :data:`WGET2_URL_ATTRIBUTES` on *any* element is a link,
  as is a ``url()`` or ``@import`` in a ``style`` attribute, a ``<style>`` element or a
  stylesheet it fetched (``-r`` alone, without ``-p``, already fetches images, scripts and
  stylesheets). ``--follow-tags`` only *adds* attributes to that list (it makes every
  attribute of the listed elements a link), so it cannot restrict it; ``--ignore-tags``
  (an element, or ``element/attribute``) can. With ``assets=False``,
  :func:`wget2_ignore_tags` ignores every HTML and SVG element but ``a``, ``area``,
  ``frame``, ``iframe`` and ``base``, and every URL attribute of those four but their
  navigational one: what is left is ``a/@href``, ``area/@href``, ``frame/@src``,
  ``iframe/@src`` (and ``<base href>``, which changes how they resolve). A ``<style>``
  element's content cannot be ignored, so a page whose ``<style>`` holds ``url()`` would
  still fetch that; the Flask pages hold none (``test_doc_site`` checks).
* Never followed: ``<form action>``, ``formaction``, ``<meta http-equiv=refresh>``,
  ``javascript:``/``mailto:``/``data:`` URLs, ``href=""`` and ``href="#..."``. Followed
  regardless: ``rel=nofollow``, ``<meta name=robots content=nofollow>`` (``--robots=off``).
* Fragments are dropped before dedup. wget2 does not decode character references in
  attributes (``href="b.html?x=1&amp;y=2"`` is requested as ``/b.html?x=1&amp;y=2``); the
  Flask pages have no internal link with ``&``, ``?`` or ``%``.
* Only 200 answers count: a 404 or 403 is requested once and left out; a 301 (a folder
  without its trailing slash, ``/dir`` → ``/dir/``) is left out and its target, when it is
  on the site, counts. ``/dir/`` and ``/dir/index.html`` are two URLs.

The crawl is limited to the site's origin (``--filter-urls --accept-regex``): wget2's own
"same host" ignores the port and the scheme, so without it, it would follow a link to
another port of 127.0.0.1 or to ``https://127.0.0.1:PORT/``.

Without the package (or wget2) the tests that use this are skipped, unless
``SHOAL_REQUIRE_DOC_SITE=1``, which makes them fail instead. The CI installs
``nginx wget2 python-flask-doc``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nginx_server import NginxSite

#: The Debian package whose documentation is the site.
DOC_PACKAGE = "python-flask-doc"

#: The folder it installs the HTML documentation in: the site's root.
DOC_ROOT = Path("/usr/share/doc/python-flask-doc/html")

#: The seed of the crawls: the documentation's start page.
DOC_SEED = "/index.html"

#: Debian's wget2 (package ``wget2``).
WGET2 = "/usr/bin/wget2"

#: How long one reference crawl may take, in seconds (it takes about one).
WGET2_TIMEOUT = 120.0

#: Attributes that wget2 1.99.1 takes as a URL on any element (libwget/html_url.c), with
#: ``style``, whose ``url()`` it follows. (In that version ``cite`` and ``classid`` are in
#: its list but never match, as the list is searched as if sorted and they are out of
#: order; ignoring them anyway is harmless.)
WGET2_URL_ATTRIBUTES = (
    "action",
    "archive",
    "background",
    "code",
    "codebase",
    "cite",
    "classid",
    "data",
    "formaction",
    "href",
    "icon",
    "lowsrc",
    "longdesc",
    "manifest",
    "profile",
    "poster",
    "src",
    "srcset",
    "usemap",
    "style",
)

#: The navigational links: element → its link attribute.
NAVIGATION = {"a": "href", "area": "href", "frame": "src", "iframe": "src"}

#: HTML's elements (current and obsolete) and SVG's elements that take a URL: with
#: ``assets=False`` wget2 ignores all of them but :data:`NAVIGATION`'s and ``base``.
_ELEMENT_GROUPS = (
    # HTML (the living standard)
    "html head title base link meta style body article section nav aside h1 h2 h3 h4 h5 h6"
    " hgroup header footer address p hr pre blockquote ol ul menu li dl dt dd figure"
    " figcaption main search div a em strong small s cite q dfn abbr ruby rt rp data time"
    " code var samp kbd sub sup i b u mark bdi bdo span br wbr ins del picture source img"
    " iframe embed object param video audio track map area table caption colgroup col tbody"
    " thead tfoot tr td th form label input button select datalist optgroup option textarea"
    " output progress meter fieldset legend details summary dialog script noscript template"
    " slot canvas",
    # HTML, obsolete
    "acronym applet basefont bgsound big blink center dir font frame frameset image"
    " isindex keygen layer ilayer listing marquee menuitem multicol nextid nobr noembed"
    " noframes plaintext rb rtc spacer strike tt xmp",
    # SVG and MathML elements that take a URL (href, xlink:href, src)
    "svg math altGlyph animate animateMotion animateTransform color-profile cursor feImage"
    " filter font-face-uri glyphRef linearGradient mpath pattern radialGradient set textPath"
    " tref use",
)
ELEMENTS = tuple(name for group in _ELEMENT_GROUPS for name in group.split())


def wget2_ignore_tags() -> str:
    """The ``--ignore-tags`` value that leaves wget2 only the navigational links."""
    ignored = [tag for tag in ELEMENTS if tag not in NAVIGATION and tag != "base"]
    for tag, link in NAVIGATION.items():
        ignored += [f"{tag}/{attr}" for attr in WGET2_URL_ATTRIBUTES if attr != link]
    ignored += [f"base/{attr}" for attr in WGET2_URL_ATTRIBUTES if attr != "href"]
    return ",".join(ignored)


def wget2_command(site: NginxSite, seed_path: str, out_dir: Path, *, assets: bool) -> list[str]:
    """The wget2 command line of :func:`reference_crawl` (it writes into ``out_dir``)."""
    origin = re.escape(site.url)
    command = [
        WGET2,
        "--no-config",  # no ~/.wget2rc, $WGET2RC or $SYSTEM_WGET2RC
        "--recursive",
        "--level=inf",  # unlimited depth (0 would mean the same)
        "--robots=off",  # no /robots.txt, and <meta name=robots> is not obeyed
        "--no-proxy",  # ignore *_proxy (they are also left out of its environment)
        "--filter-urls",
        f"--accept-regex=^{origin}",  # this origin only: scheme, host and port
        "--tries=1",
        "--timeout=10",
        "--max-threads=4",
        "--no-tcp-fastopen",
        "--no-hsts",
        "--no-hpkp",
        "--no-ocsp",
        "--no-netrc",
        "--no-cookies",
        "--no-xattr",
        "--no-use-server-timestamps",
        "--compression=identity",
        f"--directory-prefix={out_dir / 'files'}",
        f"--output-file={out_dir / 'wget2.log'}",
        f"--stats-site=csv:{out_dir / 'stats.csv'}",
    ]
    if assets:
        command.append("--page-requisites")  # the same as -r alone at unlimited depth
    else:
        command.append(f"--ignore-tags={wget2_ignore_tags()}")
    command.append(site.url + seed_path.lstrip("/"))
    return command


def _require(path: Path, what: str) -> None:
    if path.exists():
        return
    reason = f"{what} is not installed ({path} missing)"
    if os.environ.get("SHOAL_REQUIRE_DOC_SITE") == "1":
        pytest.fail(f"{reason}, and SHOAL_REQUIRE_DOC_SITE=1 requires it")
    pytest.skip(reason)


def reference_crawl(site: NginxSite, seed_path: str, *, assets: bool) -> set[str]:
    """The URLs that wget2's recursive crawl from ``seed_path`` got a 200 for.

    Each is ``http://127.0.0.1:PORT/path?query`` with the path and query exactly as wget2
    sent them (its percent-encoding), and no fragment. ``assets=False`` follows only
    ``<a href>``, ``<area href>``, ``<frame src>`` and ``<iframe src>``; ``assets=True``
    also fetches what pages and stylesheets embed (``<img>``, ``<script>``, every
    ``<link href>`` whatever its ``rel``, CSS ``url()`` and ``@import``, ...).
    The requests are read from the site's access log, from where it stood at the call.
    """
    _require(Path(WGET2), "wget2 (Debian package wget2)")
    site.sync_log()
    start = len(site.requests())
    out_dir = Path(tempfile.mkdtemp(prefix="wget2-crawl-"))
    try:
        env = {
            key: value
            for key, value in os.environ.items()
            if "proxy" not in key.lower() and "WGET" not in key.upper()
        }
        env["HOME"] = str(out_dir)  # no ~/.wget-hsts, ~/.netrc or ~/.wget2rc of the user's
        completed = subprocess.run(
            wget2_command(site, seed_path, out_dir, assets=assets),
            env=env,
            cwd=out_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=WGET2_TIMEOUT,
            check=False,
        )
        # 0: all went well; 4: a network error; 8: an error answer (a 404): both are part of
        # the crawl. 1 (generic), 2 (bad options) or 3 (file I/O) mean the crawl is void.
        if completed.returncode in (1, 2, 3) or completed.returncode < 0:
            log = (out_dir / "wget2.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"wget2 failed with exit code {completed.returncode}:\n"
                f"{completed.stderr.decode(errors='replace')}\n{log}"
            )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    site.sync_log()
    return {
        f"http://127.0.0.1:{site.port}{request.path}"
        for request in site.requests()[start:]
        if request.status == 200 and request.method == "GET"
    }


@pytest.fixture(scope="session")
def doc_site() -> Iterator[NginxSite]:
    """nginx on 127.0.0.1 serving :data:`DOC_ROOT` (skipped when it is not installed)."""
    _require(DOC_ROOT / "index.html", f"the documentation tree (Debian package {DOC_PACKAGE})")
    with NginxSite(DOC_ROOT) as site:
        yield site
