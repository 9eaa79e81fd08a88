"""Host names to addresses, for lists of a million hosts: c-ares lookups behind a cache.

aiohttp's default resolver runs ``getaddrinfo`` on a few threads and its connector keeps
every answer it ever got, for a fixed time. :class:`CachingResolver` instead asks c-ares
(through aiodns) on the event loop, and keeps what it learnt in a cache of its own:

* an answer lives for its TTL, clamped to the settings' ``min_ttl_s``..``max_ttl_s``;
* a name that does not exist (NXDOMAIN, or no address records) is remembered for
  ``negative_ttl_s`` and fails at once until then;
* at most ``max_names`` names are kept: the least recently looked up are dropped first;
* one lookup per name is in flight at a time: the others asking wait for it;
* at most ``max_lookups`` lookups run at once;
* A and AAAA are asked together; IPv4 addresses are tried first unless ``prefer_ipv6``.

Failures come in two kinds a user acts on differently. A name that does not exist raises
:class:`NameNotFound` (error kind ``dns``, not retried: fix the list). A lookup that failed
for now — the server failed, refused or did not answer in time — raises
:class:`LookupFailed`, which the fetcher files under ``connect``: retried like a connection
that failed, and counted towards parking the host.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from shoal.config import DNSSettings, check_name_server
from shoal.latency import Latency, LatencyHistogram, latency_from

#: Lookups one c-ares channel makes before new ones go to a fresh channel. c-ares keeps
#: each answer in a cache of its own for the record's TTL, with no bound on the names
#: (measured: about 1.4 KB a name, so 1.4 GB for a million hosts), and pycares cannot turn
#: it off; a channel that has had its share is closed once its lookups are done, which
#: frees that cache. shoal's own cache keeps what is worth keeping.
_CHANNEL_LOOKUPS = 10_000
#: c-ares status codes that mean the name has no address (anything else is temporary).
_NOT_FOUND = frozenset({1, 4, 7, 8})  # ENODATA, ENOTFOUND, EBADNAME, EBADFAMILY
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class NameNotFound(OSError):
    """The name has no address: NXDOMAIN, or no A or AAAA record."""


class LookupFailed(OSError):
    """The lookup failed for now: a server failure or refusal, or no answer in time."""


@dataclass(frozen=True, slots=True)
class DNSStatistics:
    """The resolver's work during a run.

    ``lookups`` are queries sent (for A and AAAA together); ``cached`` requests were answered
    from the cache and ``coalesced`` ones waited for a lookup already in flight;
    ``not_found`` and ``failed`` count the lookups that ended so; ``latency`` is the time
    of each lookup sent.
    """

    lookups: int = 0
    cached: int = 0
    coalesced: int = 0
    not_found: int = 0
    failed: int = 0
    names: int = 0  # names in the cache now
    latency: Latency = field(default_factory=Latency)
    latency_buckets: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))

    def since(self, start: DNSStatistics) -> DNSStatistics:
        """The work done after ``start`` (an earlier snapshot of the same resolver)."""
        buckets = Counter(self.latency_buckets)
        buckets.subtract(start.latency_buckets)
        kept = {bucket: count for bucket, count in buckets.items() if count > 0}
        return DNSStatistics(
            lookups=self.lookups - start.lookups,
            cached=self.cached - start.cached,
            coalesced=self.coalesced - start.coalesced,
            not_found=self.not_found - start.not_found,
            failed=self.failed - start.failed,
            names=self.names,
            latency=latency_from(kept, self.latency.max_ms or 0.0),
            latency_buckets=MappingProxyType(kept),
        )

    @classmethod
    def combine(cls, parts: Sequence[DNSStatistics]) -> DNSStatistics:
        """The work of several resolvers (the processes of one job)."""
        buckets: Counter[int] = Counter()
        for part in parts:
            buckets.update(part.latency_buckets)
        max_ms = max((part.latency.max_ms or 0.0 for part in parts), default=0.0)
        return cls(
            **{name: sum(getattr(part, name) for part in parts) for name in _COUNTS},
            latency=latency_from(buckets, max_ms),
            latency_buckets=MappingProxyType(dict(buckets)),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in _COUNTS}
        data["latency_max_ms"] = self.latency.max_ms
        data["latency_buckets"] = sorted(self.latency_buckets.items())
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DNSStatistics:
        buckets = {int(bucket): int(count) for bucket, count in data["latency_buckets"]}
        return cls(
            **{name: int(data[name]) for name in _COUNTS},
            latency=latency_from(buckets, data["latency_max_ms"] or 0.0),
            latency_buckets=MappingProxyType(buckets),
        )


_COUNTS = ("lookups", "cached", "coalesced", "not_found", "failed", "names")


#: One cache entry: when it expires (loop time), and the addresses (a family and an
#: address each, in the order to try them) or, for a name that does not exist, why.
_Entry = tuple[float, tuple[tuple[int, str], ...] | str]


class CachingResolver(AbstractResolver):
    """aiohttp's resolver interface over c-ares, with the cache described above."""

    def __init__(self, settings: DNSSettings | None = None) -> None:
        self.settings = settings or DNSSettings()
        self._channel: _Channel | None = None  # made on first use (in the loop)
        self._retired: set[_Channel] = set()  # still finishing their lookups
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}
        self._gate = asyncio.Semaphore(self.settings.max_lookups)
        self._latency = LatencyHistogram()
        self._lookups = self._cached = self._coalesced = self._not_found = self._failed = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        name = host.lower().rstrip(".")
        entry = self._cache.get(name)
        loop = asyncio.get_running_loop()
        if entry is not None and entry[0] > loop.time():
            self._cached += 1
        else:
            task = self._inflight.get(name)
            if task is None:
                task = loop.create_task(self._lookup(name))
                self._inflight[name] = task
                task.add_done_callback(self._landed(name))
            else:
                self._coalesced += 1
            # A waiter that is cancelled (its attempt's deadline) leaves the lookup running
            # for the others, and for the cache.
            entry = await asyncio.shield(task)
        return _results(host, port, family, entry[1])

    def statistics(self) -> DNSStatistics:
        return DNSStatistics(
            lookups=self._lookups,
            cached=self._cached,
            coalesced=self._coalesced,
            not_found=self._not_found,
            failed=self._failed,
            names=len(self._cache),
            latency=self._latency.snapshot(),
            latency_buckets=self._latency.buckets(),
        )

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        channels = [*self._retired, *([self._channel] if self._channel else [])]
        self._channel = None
        self._retired.clear()
        for channel in channels:
            await channel.resolver.close()

    # -- the lookup ------------------------------------------------------------------------

    async def _lookup(self, name: str) -> _Entry:
        import aiodns  # here, not at import: a run that never looks a name up never loads it

        settings = self.settings
        async with self._gate:
            channel, retired = self._take_channel(aiodns)
            if retired is not None:  # let go of it: its last lookup closes it
                await self._release(retired)
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            self._lookups += 1
            try:
                reply = await channel.resolver.getaddrinfo(
                    name, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM
                )
            except aiodns.error.DNSError as exc:
                code = exc.args[0] if exc.args else None
                reason = exc.args[1] if len(exc.args) > 1 else "DNS lookup failed"
                if code in _NOT_FOUND:
                    self._not_found += 1
                    why = f"DNS: {name} does not exist ({reason})"
                    self._store(name, (loop.time() + settings.negative_ttl_s, why))
                    raise NameNotFound(socket.EAI_NONAME, why) from None
                self._failed += 1
                servers = ", ".join(settings.servers) or "the system's name servers"
                raise LookupFailed(
                    socket.EAI_AGAIN,
                    f"DNS lookup of {name} failed for now ({reason}; asked {servers})",
                ) from None
            finally:
                self._latency.add((time.perf_counter() - started) * 1000)
                await self._release(channel)
        found: dict[tuple[int, str], int] = {}
        for node in reply.nodes:
            address = node.addr[0].decode("ascii")
            found.setdefault((node.family, address), node.ttl)
        if not found:
            self._not_found += 1
            why = f"DNS: {name} has no address"
            self._store(name, (loop.time() + settings.negative_ttl_s, why))
            raise NameNotFound(socket.EAI_NODATA, why)
        first = socket.AF_INET6 if settings.prefer_ipv6 else socket.AF_INET
        addresses = tuple(sorted(found, key=lambda pair: pair[0] != first))
        ttl = min(max(min(found.values()), settings.min_ttl_s), settings.max_ttl_s)
        entry: _Entry = (loop.time() + ttl, addresses)
        self._store(name, entry)
        return entry

    async def _release(self, channel: _Channel) -> None:
        channel.in_flight -= 1
        if channel in self._retired and not channel.in_flight:
            self._retired.discard(channel)
            await channel.resolver.close()

    def _take_channel(self, aiodns: Any) -> tuple[_Channel, _Channel | None]:
        """The channel for the next lookup (a fresh one once the current had its share),
        and the channel it replaced, if any, held for the caller to release."""
        channel = self._channel
        retired = None
        if channel is not None and channel.lookups >= _CHANNEL_LOOKUPS:
            self._retired.add(channel)
            channel.in_flight += 1
            retired, channel = channel, None
        if channel is None:
            settings = self.settings
            options: dict[str, Any] = {"timeout": settings.timeout_s, "tries": settings.tries}
            if settings.servers:
                options["nameservers"] = [_c_ares_server(s) for s in settings.servers]
            channel = self._channel = _Channel(aiodns.DNSResolver(**options))
        channel.lookups += 1
        channel.in_flight += 1
        return channel, retired

    def _store(self, name: str, entry: _Entry) -> None:
        cache = self._cache
        if cache.pop(name, None) is None and len(cache) >= self.settings.max_names:
            del cache[next(iter(cache))]  # the least recently looked up
        cache[name] = entry

    def _landed(self, name: str) -> Callable[[asyncio.Task[_Entry]], None]:
        def landed(task: asyncio.Task[_Entry]) -> None:
            if self._inflight.get(name) is task:
                del self._inflight[name]
            if not task.cancelled():
                task.exception()  # every waiter may have gone: the outcome is still seen

        return landed


class _Channel:
    """One c-ares channel, and the lookups it has made and is making."""

    __slots__ = ("in_flight", "lookups", "resolver")

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver
        self.lookups = 0
        self.in_flight = 0


def _results(
    host: str, port: int, family: int, answer: tuple[tuple[int, str], ...] | str
) -> list[ResolveResult]:
    if isinstance(answer, str):
        raise NameNotFound(socket.EAI_NONAME, answer)
    results = [
        ResolveResult(hostname=host, host=address, port=port, family=found, proto=0, flags=_NUMERIC)
        for found, address in answer
        if family in (socket.AF_UNSPEC, found)
    ]
    if not results:
        wanted = "IPv6" if family == socket.AF_INET6 else "IPv4"
        raise NameNotFound(socket.EAI_NODATA, f"DNS: {host} has no {wanted} address")
    return results


def _c_ares_server(server: str) -> str:
    address, port = check_name_server(server)
    if port == 53:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
