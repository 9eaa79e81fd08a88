"""The resolver against a real DNS server (dnslib on 127.0.0.1): answers, the cache and its
TTLs, coalescing, the lookup cap, the bound on names, and the two kinds of failure — first
on the resolver itself, then through the engine and the command line."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shoal import DNSSettings, Engine, ErrorKind, Limits, Network, Politeness, RetryPolicy, Timeouts
from shoal.config import check_name_server
from shoal.errors import ConfigError
from shoal.fetching.dns import CachingResolver, LookupFailed, NameNotFound
from tests.dns_server import TestDNSServer
from tests.servers import Misbehaving

FAST_RETRY = RetryPolicy(retries=2, backoff_base_s=0.01, backoff_max_s=0.02)


@pytest.fixture
def dns() -> Iterator[TestDNSServer]:
    with TestDNSServer() as server:
        yield server


def settings(dns: TestDNSServer, **options: Any) -> DNSSettings:
    # Long enough for a busy machine; the tests of a silent server set their own.
    options.setdefault("timeout_s", 2.0)
    options.setdefault("tries", 1)
    return DNSSettings(servers=(dns.address,), **options)


async def lookup(resolver: CachingResolver, name: str) -> list[tuple[int, str]]:
    return [(r["family"], r["host"]) for r in await resolver.resolve(name, 80)]


# -- the resolver on its own ------------------------------------------------------------------


async def test_answers_ipv4_first_and_both_families(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns))
    try:
        assert await lookup(resolver, "h1.test") == [(socket.AF_INET, "127.0.0.1")]
        assert await lookup(resolver, "dual-a.test") == [
            (socket.AF_INET, "127.0.0.1"),
            (socket.AF_INET6, "::1"),
        ]
        assert await lookup(resolver, "v6-a.test") == [(socket.AF_INET6, "::1")]
        only_v4 = await resolver.resolve("dual-a.test", 80, socket.AF_INET)
        assert [r["host"] for r in only_v4] == ["127.0.0.1"]
        assert all(r["port"] == 80 for r in only_v4)
    finally:
        await resolver.close()
    # A and AAAA are asked together, once per name.
    assert dns.zone.queries[("h1.test", "A")] == 1
    assert dns.zone.queries[("h1.test", "AAAA")] == 1


async def test_prefer_ipv6_tries_ipv6_first(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns, prefer_ipv6=True))
    try:
        assert await lookup(resolver, "dual-b.test") == [
            (socket.AF_INET6, "::1"),
            (socket.AF_INET, "127.0.0.1"),
        ]
    finally:
        await resolver.close()


async def test_an_answer_is_cached_and_the_server_asked_once(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns))
    try:
        for _ in range(5):
            await lookup(resolver, "Cached.Test.")  # case and the final dot do not matter
        stats = resolver.statistics()
    finally:
        await resolver.close()
    assert dns.zone.count("cached.test") == 2  # one A and one AAAA query
    assert (stats.lookups, stats.cached, stats.names) == (1, 4, 1)
    assert stats.latency.count == 1


async def test_concurrent_requests_for_one_name_share_one_lookup(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns))
    try:
        answers = await asyncio.gather(*(lookup(resolver, "slow-one.test") for _ in range(50)))
        stats = resolver.statistics()
    finally:
        await resolver.close()
    assert all(answer == [(socket.AF_INET, "127.0.0.1")] for answer in answers)
    assert dns.zone.count("slow-one.test") == 2
    assert (stats.lookups, stats.coalesced) == (1, 49)


async def test_a_cancelled_waiter_leaves_the_lookup_to_the_others(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns))
    try:
        first = asyncio.create_task(lookup(resolver, "slow-two.test"))
        second = asyncio.create_task(lookup(resolver, "slow-two.test"))
        await asyncio.sleep(0.05)
        first.cancel()
        assert await second == [(socket.AF_INET, "127.0.0.1")]
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await lookup(resolver, "slow-two.test") == [(socket.AF_INET, "127.0.0.1")]
    finally:
        await resolver.close()
    assert dns.zone.count("slow-two.test") == 2


@pytest.mark.parametrize(
    ("name", "options", "lookups"),
    [
        ("ttl0-a.test", {"min_ttl_s": 0}, 2),  # a zero TTL, unclamped: asked again
        ("ttl0-b.test", {}, 1),  # clamped up to the 60 s minimum: kept
        ("long-c.test", {"min_ttl_s": 0, "max_ttl_s": 0}, 2),  # 300 s clamped down to 0
        ("long-d.test", {}, 1),  # 300 s: kept
    ],
)
async def test_ttls_are_clamped(
    dns: TestDNSServer, name: str, options: dict[str, float], lookups: int
) -> None:
    resolver = CachingResolver(settings(dns, **options))
    try:
        await lookup(resolver, name)
        await asyncio.sleep(0.01)
        await lookup(resolver, name)
    finally:
        await resolver.close()
    assert resolver.statistics().lookups == lookups
    if lookups == 1:  # kept: the server was asked once (c-ares's own cache may answer a
        assert dns.zone.count(name) == 2  # second lookup within the record's TTL)


async def test_a_name_that_does_not_exist_fails_and_is_remembered(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns))
    try:
        for _ in range(3):
            with pytest.raises(NameNotFound, match=r"nx-gone\.test does not exist"):
                await resolver.resolve("nx-gone.test", 80)
        stats = resolver.statistics()
    finally:
        await resolver.close()
    assert dns.zone.count("nx-gone.test") == 2
    assert (stats.lookups, stats.not_found, stats.cached) == (1, 1, 2)


async def test_remembering_a_missing_name_can_be_turned_off(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns, negative_ttl_s=0))
    try:
        for _ in range(2):
            with pytest.raises(NameNotFound):
                await resolver.resolve("nx-again.test", 80)
        assert resolver.statistics().lookups == 2
    finally:
        await resolver.close()


async def test_a_name_with_no_address_of_the_family_asked(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns))
    try:
        with pytest.raises(NameNotFound, match="no IPv4 address"):
            await resolver.resolve("v6-only.test", 80, socket.AF_INET)
    finally:
        await resolver.close()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("fail-a.test", "general failure"),
        ("refuse-a.test", "refused"),
        ("mute-a.test", "Timeout"),
    ],
)
async def test_a_failed_lookup_is_temporary_and_not_cached(
    dns: TestDNSServer, name: str, reason: str
) -> None:
    resolver = CachingResolver(settings(dns, timeout_s=0.3 if name.startswith("mute") else 2.0))
    try:
        for _ in range(2):
            with pytest.raises(LookupFailed, match=f"failed for now.*{reason}") as caught:
                await resolver.resolve(name, 80)
            assert dns.address in str(caught.value)
        stats = resolver.statistics()
    finally:
        await resolver.close()
    assert (stats.lookups, stats.failed, stats.names) == (2, 2, 0)


async def test_lookups_in_flight_are_capped(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns, max_lookups=2))
    try:
        names = [f"slow-cap{n}.test" for n in range(6)]
        await asyncio.gather(*(lookup(resolver, name) for name in names))
    finally:
        await resolver.close()
    assert resolver.statistics().lookups == 6
    # Each lookup asks A and AAAA at once: two lookups are at most four queries.
    assert 2 <= dns.zone.peak <= 4


async def test_the_cache_holds_at_most_max_names(dns: TestDNSServer) -> None:
    resolver = CachingResolver(settings(dns, max_names=10))
    try:
        for n in range(30):
            await lookup(resolver, f"n{n}.test")
        assert resolver.statistics().names == 10
        await lookup(resolver, "n29.test")  # among the last ten: still cached
        assert resolver.statistics().lookups == 30
        await lookup(resolver, "n0.test")  # the first one was dropped: looked up again
        assert resolver.statistics().lookups == 31
    finally:
        await resolver.close()
    assert dns.zone.count("n29.test") == 2


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ("dns.example", "not an IP address"),
        ("127.0.0.1:0", "no valid port"),
        ("127.0.0.1:x", "no valid port"),
        ("[::1]x", "not ADDRESS"),
    ],
)
def test_a_bad_name_server_is_a_config_error(server: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        DNSSettings(servers=(server,))
    assert caught.value.option == "servers"


def test_name_servers_with_ports_and_ipv6_are_accepted() -> None:
    servers = ("127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353")
    accepted = DNSSettings(servers=servers).servers
    # Each is read as the address and port the resolver asks (53 unless one is given).
    assert [check_name_server(server) for server in accepted] == [
        ("127.0.0.1", 53),
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("::1", 5353),
    ]


# -- through the engine -----------------------------------------------------------------------


def engine(dns: TestDNSServer, resolve: dict[str, str] | None = None, **options: Any) -> Engine:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("timeouts", Timeouts(total_s=10, connect_s=5, read_s=10))
    return Engine(network=Network(dns=settings(dns), resolve=resolve or {}), **options)


async def test_many_hosts_are_each_looked_up_once(dns: TestDNSServer, server: Misbehaving) -> None:
    names = [f"host{n}.test" for n in range(250)]
    urls = [server.url(f"/ok?i={i}", host=names[i % len(names)]) for i in range(1000)]
    results = []
    # On a starved machine a lookup (or a connect) can time out now and then: more patient
    # retries than elsewhere, since what this test counts is lookups, not first tries.
    patient = RetryPolicy(retries=5, backoff_base_s=0.05, backoff_max_s=0.5)
    limits = Limits(concurrency=50, per_host=4)
    # Nor is a host parked after a few such failures in a row (endpoint health, tested in
    # test_dead_endpoints): once parked, all four of its requests would fail unsent.
    steady = Politeness(dead_after=0)
    async with engine(dns, limits=limits, retry=patient, politeness=steady) as fetcher:
        async with fetcher.stream(urls) as stream:
            async for result in stream:
                results.append(result)
        stats = fetcher.statistics()
    assert len(results) == 1000
    assert [(r.url, r.error) for r in results if r.status != 200 or r.error is not None] == []
    # Each name was looked up once (a lookup that failed on a busy machine is retried).
    assert stats.dns.lookups - stats.dns.failed == 250
    assert (stats.dns.names, stats.dns.not_found) == (250, 0)
    # From the server's side: every name was asked for (A and AAAA), and far fewer queries
    # came than the 1,000 requests would need without the cache (c-ares may resend a query
    # whose answer is slow, so not exactly two per name).
    assert all(dns.zone.count(name) >= 2 for name in names)
    assert dns.zone.total() <= 2 * 2 * stats.dns.lookups


async def test_a_missing_name_fails_at_once_as_dns(dns: TestDNSServer, server: Misbehaving) -> None:
    async with engine(dns) as fetcher:
        async with fetcher.stream([server.url("/ok", host="nx-site.test")]) as stream:
            [result] = [r async for r in stream]
        stats = fetcher.statistics()
    assert result.error is not None
    assert result.error.kind is ErrorKind.DNS
    assert result.error.message == "DNS: nx-site.test does not exist (Domain name not found)"
    assert result.attempts == 1  # not retried
    assert (stats.dns.lookups, stats.dns.not_found) == (1, 1)


async def test_a_failed_lookup_is_retried_like_a_connect_failure(
    dns: TestDNSServer, server: Misbehaving
) -> None:
    async with engine(dns) as fetcher:
        async with fetcher.stream([server.url("/ok", host="fail-site.test")]) as stream:
            [result] = [r async for r in stream]
        stats = fetcher.statistics()
    assert result.error is not None
    assert result.error.kind is ErrorKind.CONNECT
    assert result.error.message.startswith("DNS lookup of fail-site.test failed for now")
    assert result.attempts == 3  # the first and two retries
    assert dns.zone.count("fail-site.test") == 6
    assert (stats.dns.lookups, stats.dns.failed) == (3, 3)


async def test_resolve_wins_for_the_names_it_lists(dns: TestDNSServer, server: Misbehaving) -> None:
    urls = [server.url("/ok", host="mapped.test"), server.url("/ok", host="asked.test")]
    mapped = engine(dns, resolve={"mapped.test": "127.0.0.1"})
    async with mapped as fetcher, fetcher.stream(urls) as stream:
        results = [r async for r in stream]
    assert all(r.status == 200 for r in results)
    assert dns.zone.count("mapped.test") == 0
    assert dns.zone.count("asked.test") == 2


async def test_statistics_count_each_run_of_an_engine(
    dns: TestDNSServer, server: Misbehaving
) -> None:
    async with engine(dns) as fetcher:
        first = await fetcher.run([server.url("/ok", host="first.test")])
        second = await fetcher.run([server.url("/ok", host="second.test")])
    assert (first.dns.lookups, first.dns.latency.count) == (1, 1)
    assert (second.dns.lookups, second.dns.latency.count) == (1, 1)
    assert second.dns.names == 2  # the cache serves every run of the engine


# -- the command line -------------------------------------------------------------------------


def shoal_fetch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shoal", "fetch", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


async def test_cli_dns_server_and_summary(
    dns: TestDNSServer, server: Misbehaving, tmp_path: Path
) -> None:
    urls = tmp_path / "urls.txt"
    lines = [server.url(f"/ok?i={i}", host=f"cli{i % 3}.test") for i in range(6)]
    urls.write_text("\n".join([*lines, server.url("/ok", host="nx-cli.test")]) + "\n")
    out = tmp_path / "out.jsonl"
    done = await asyncio.to_thread(
        shoal_fetch,
        str(urls),
        "-o",
        str(out),
        "--dns-server",
        dns.address,
        "--dns-concurrency",
        "4",
        "--progress",
        "off",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr  # one request failed
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    kinds = sorted((r["error"] or {}).get("kind", "ok") for r in records)
    assert kinds == ["dns", *["ok"] * 6]
    assert " dns " in done.stderr
    assert "4 lookups" in done.stderr
    assert "1 not found" in done.stderr
    for n in range(3):
        assert dns.zone.count(f"cli{n}.test") == 2


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--dns-server", "resolver.example"),
        ("--dns-server", "127.0.0.1:99999"),
        ("--dns-concurrency", "0"),
        ("--dns-min-ttl", "-1"),
    ],
)
def test_cli_bad_dns_options_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://a.test/\n")
    done = shoal_fetch(str(urls), "-o", str(tmp_path / "out.jsonl"), option, value, cwd=tmp_path)
    assert done.returncode == 2
    assert option in done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_max_ttl_below_min_ttl_is_a_usage_error(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://a.test/\n")
    done = shoal_fetch(
        str(urls), "-o", str(tmp_path / "o.jsonl"), "--dns-max-ttl", "5", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "--dns-max-ttl" in done.stderr


async def test_channels_are_renewed_so_c_ares_cache_stays_bounded(
    dns: TestDNSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shoal.fetching.dns._CHANNEL_LOOKUPS", 5)
    # shoal's own cache off: every request is a lookup, so c-ares's cache shows.
    resolver = CachingResolver(settings(dns, min_ttl_s=0, max_ttl_s=0))
    try:
        await lookup(resolver, "renew.test")
        await lookup(resolver, "renew.test")  # the same channel: c-ares answers itself
        assert dns.zone.count("renew.test") == 2
        names = [f"fill{n}.test" for n in range(12)]
        await asyncio.gather(*(lookup(resolver, name) for name in names))
        await lookup(resolver, "renew.test")  # a fresh channel: asked again
        assert dns.zone.count("renew.test") == 4
        assert resolver.statistics().lookups == 15
    finally:
        await resolver.close()
    assert not resolver._retired  # every channel that had its share was closed
