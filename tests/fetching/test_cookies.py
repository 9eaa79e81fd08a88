"""Cookies, opt-in: a site that sets a cookie and redirects to check it works with
``cookies=True`` and not without; cookies stay within their site; the jar stays bounded
whatever the number of sites."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from yarl import URL

from shoal import Engine, Network, Request, Result, RetryPolicy, Timeouts
from shoal.fetching.cookies import SiteCookieJar
from tests import helpers
from tests.command import RESOLVE, shoal
from tests.servers import Misbehaving


def make_engine(*, cookies: bool) -> Engine:
    return helpers.make_engine(
        network=Network(cookies=cookies),
        timeouts=Timeouts(total_s=10, connect_s=5, read_s=5),
        retry=RetryPolicy(),
        keep_body=True,
    )


async def fetch(urls: list[str], *, cookies: bool) -> list[Result]:
    engine = make_engine(cookies=cookies)
    async with engine, engine.stream(urls) as results:
        return [result async for result in results]


def set_then_check(server: Misbehaving, host: str, check_host: str, **cookie: str) -> str:
    check = server.url("/cookie/check?name=visited", host=check_host)
    query = "&".join(f"{name}={quote(value)}" for name, value in cookie.items())
    return server.url(f"/cookie/set?name=visited&{query}&to={quote(check)}", host=host)


def cookies_sent(server: Misbehaving, host: str) -> list[str]:
    """The Cookie header of every request the server got for ``host`` (``""``: none)."""
    return [
        headers.get("Cookie", "")
        for headers in server.log.headers
        if headers.get("Host", "").split(":")[0] == host
    ]


# -- through the engine, against the real server -------------------------------------------


async def test_a_site_that_sets_a_cookie_and_redirects_to_check_it(server: Misbehaving) -> None:
    url = set_then_check(server, "shop.test", "shop.test", value="yes")
    [without] = await fetch([url], cookies=False)
    assert without.status == 403  # the default: every request stands alone
    [with_jar] = await fetch([url], cookies=True)
    assert with_jar.ok and with_jar.status == 200, with_jar.error
    assert with_jar.body == b"visited=yes"
    assert with_jar.redirects == 1


async def test_a_cookie_for_the_parent_domain_reaches_its_other_hosts(
    server: Misbehaving,
) -> None:
    url = set_then_check(server, "login.site.test", "www.site.test", domain="site.test")
    [result] = await fetch([url], cookies=True)
    assert result.status == 200, result.error
    assert cookies_sent(server, "www.site.test") == ["visited=1"]


async def test_cookies_never_reach_another_site(server: Misbehaving) -> None:
    first = server.url("/cookie/set?name=mine&value=secret", host="one.test")
    again = server.url("/echo?n=2", host="one.test")
    other = server.url("/echo?n=3", host="two.test")
    engine = make_engine(cookies=True)
    async with engine:  # one jar for the engine's runs: three runs, one URL each, in order
        for url in (first, again, other):
            async with engine.stream([url]) as stream:
                [result] = [r async for r in stream]
                assert result.ok, result.error
    assert cookies_sent(server, "one.test")[-1] == "mine=secret"
    assert cookies_sent(server, "two.test") == [""]


async def test_the_command_line_option(server: Misbehaving, tmp_path: Path) -> None:
    listing, out = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    listing.write_text(set_then_check(server, "cli.test", "cli.test") + "\n")
    args = ("fetch", str(listing), "-o", str(out), *RESOLVE, "--progress", "off", "-q")
    finished = await shoal(*args, "--cookies")
    assert finished.code == 0, finished.stderr
    assert b'"status":200' in out.read_bytes()
    assert b"--cookies" in (await shoal("fetch", "--help")).stdout


# -- the jar itself ----------------------------------------------------------------------------


def set_cookie(jar: SiteCookieJar, url: str, *headers: str) -> None:
    jar.update_cookies_from_headers(list(headers), URL(url))


def sent(jar: SiteCookieJar, url: str) -> dict[str, str]:
    return {name: morsel.value for name, morsel in jar.filter_cookies(URL(url)).items()}


async def test_hosts_of_one_registrable_domain_share_a_site() -> None:
    jar = SiteCookieJar()
    set_cookie(jar, "http://www.example.co.uk/", "a=1; Domain=example.co.uk")
    assert sent(jar, "http://shop.example.co.uk/") == {"a": "1"}
    assert jar.sites == 1


async def test_a_cookie_for_a_public_suffix_stays_with_the_site_that_set_it() -> None:
    jar = SiteCookieJar()
    set_cookie(jar, "http://evil.co.uk/", "super=1; Domain=co.uk")
    assert sent(jar, "http://bank.co.uk/") == {}
    assert sent(jar, "http://evil.co.uk/") == {"super": "1"}


async def test_an_ip_address_host_keeps_its_host_only_cookies() -> None:
    jar = SiteCookieJar()
    set_cookie(jar, "http://127.0.0.7:8080/", "s=1")
    assert sent(jar, "http://127.0.0.7:8080/x") == {"s": "1"}
    assert sent(jar, "http://127.0.0.8:8080/x") == {}


async def test_secure_and_path_rules_are_aiohttps() -> None:
    jar = SiteCookieJar()
    set_cookie(jar, "https://a.test/app/", "s=1; Secure; Path=/", "p=2; Path=/app")
    assert sent(jar, "http://a.test/app/") == {"p": "2"}
    assert sent(jar, "https://a.test/app/x") == {"s": "1", "p": "2"}
    assert sent(jar, "https://a.test/other") == {"s": "1"}


async def test_an_expired_cookie_leaves_no_jar() -> None:
    jar = SiteCookieJar()
    set_cookie(jar, "http://a.test/", "gone=1; Max-Age=0")
    assert jar.sites == 0 and jar.size == 0 and len(jar) == 0


async def test_the_least_recently_used_sites_go_first() -> None:
    jar = SiteCookieJar(max_sites=3)
    for name in ("a", "b", "c"):
        set_cookie(jar, f"http://{name}.test/", f"{name}=1")
    sent(jar, "http://a.test/")  # a is in use: b is now the oldest
    set_cookie(jar, "http://d.test/", "d=1")
    assert jar.sites == 3 and jar.evicted == 1
    assert sent(jar, "http://b.test/") == {}
    assert sent(jar, "http://a.test/") == {"a": "1"}
    assert sent(jar, "http://d.test/") == {"d": "1"}


async def test_memory_stays_bounded_whatever_the_number_of_sites() -> None:
    budget = 1024 * 1024
    jar = SiteCookieJar(max_bytes=budget)
    for number in range(5_000):
        set_cookie(jar, f"http://host{number}.test/", f"id={'x' * 200}; Path=/", "b=2")
        assert jar.size <= budget
    assert 0 < jar.sites < 5_000 and jar.evicted == 5_000 - jar.sites
    assert jar.size == sum(jar._sizes.values())  # the running total is exact
    assert sent(jar, "http://host4999.test/") == {"id": "x" * 200, "b": "2"}


async def test_clear_and_clear_domain() -> None:
    jar = SiteCookieJar()
    set_cookie(jar, "http://a.test/", "a=1")
    set_cookie(jar, "http://b.test/", "b=1")
    jar.clear_domain("a.test")
    assert sent(jar, "http://a.test/") == {} and jar.sites == 1
    assert {morsel.key for morsel in jar} == {"b"}
    jar.clear()
    assert jar.sites == 0 and jar.size == 0 and len(jar) == 0


async def test_a_requests_own_cookie_header_is_sent_besides_the_jars(
    server: Misbehaving,
) -> None:
    engine = make_engine(cookies=True)
    async with engine:
        for request in (
            server.url("/cookie/set?name=jar&value=1", host="own.test"),
            Request(server.url("/echo", host="own.test"), headers={"Cookie": "mine=2"}),
        ):
            async with engine.stream([request]) as stream:
                [result] = [r async for r in stream]
                assert result.ok, result.error
    sent_now = sorted(cookies_sent(server, "own.test")[-1].split("; "))
    assert sent_now == ["jar=1", "mine=2"]
