"""Splitting one job over several processes without breaking its limits.

Every request goes to exactly one shard, chosen from its host and its key, so a duplicate
meets its twin in the same shard's journal; the exception is two requests that share an
``id`` but name different hosts, which may go to two shards (routing by the id alone would
break the split of each host's cap). A host's requests are spread over
``min(per_host, count)`` shards starting at a shard picked by the host's name, and each of
those shards gets its part of the host's in-flight cap: the parts add up to ``per_host``
exactly, so the cap holds over the whole job. Hashes are CRC-32 and the key's own digest,
the same in every process (unlike Python's ``hash``).

:class:`ShardedWork` is the work source of one shard's run (``--processes``): it admits
only the entries its shard owns, and gives the scheduler its part of each host's cap.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from shoal.errors import ConfigError
from shoal.job import Entry
from shoal.scheduling.backlog import LocalWork
from shoal.scheduling.queues import HostCap
from shoal.scheduling.rules import HostRules
from shoal.scheduling.scheduler import Scheduler
from shoal.store.store import Store


def split(total: int, count: int, index: int) -> int:
    """Part ``index`` of ``total`` split over ``count`` parts as evenly as possible."""
    return total // count + (1 if index < total % count else 0)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``, for a job whose per-host cap is ``per_host``."""

    index: int
    count: int
    per_host: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError("processes", f"shard {self.index} of {self.count} does not exist")

    def owns(self, entry: Entry, per_host: int | None = None, *, paced: bool = False) -> bool:
        """Whether this shard handles ``entry`` (whose host's cap is ``per_host``)."""
        return self.route(entry, per_host, paced=paced) == self.index

    def route(self, entry: Entry, per_host: int | None = None, *, paced: bool = False) -> int:
        spread = int.from_bytes(entry.key[-8:], "big")
        if entry.target is None:  # not a request: any shard will do, always the same one
            return spread % self.count
        base = zlib.crc32((entry.target.raw_host or "").encode())
        return (base + spread % self._width(per_host, paced)) % self.count

    def host_cap(self, host: str, per_host: int | None = None, *, paced: bool = False) -> int:
        """This shard's part of ``host``'s in-flight cap (0: none of its requests come here).

        ``per_host`` is the host's own cap when it differs from the job's. A ``paced`` host
        (a rate or a delay) goes to one shard whole, so one clock spaces all its requests.
        """
        width = self._width(per_host, paced)
        rank = (self.index - zlib.crc32(host.encode())) % self.count
        if rank >= width:
            return 0
        return split(self.per_host if per_host is None else per_host, width, rank)

    def _width(self, per_host: int | None, paced: bool) -> int:
        if paced:
            return 1
        return min(self.per_host if per_host is None else per_host, self.count)


class ShardedWork(LocalWork):
    """One shard's run: its part of the input, in admission order, with its part of each
    host's cap. ``whole_hosts`` gives every host to one shard whole (a crawl's: the links
    a page gives stay on its host, so they are always the finding shard's own)."""

    def __init__(self, store: Store, shard: Shard, *, whole_hosts: bool) -> None:
        super().__init__(store)
        self._shard = shard
        self._whole = whole_hosts
        self._rules: HostRules | None = None

    def host_cap(self, split: bool) -> HostCap | None:
        """The shard's part of each host's cap; ``None`` unless ``split`` (a map without
        groups: its one bucket each shard's own concurrency bounds)."""
        if not split:
            return None
        shard, whole = self._shard, self._whole

        def cap(host: str, limit: int, paced: bool) -> int:
            return shard.host_cap(host, limit, paced=paced or whole)

        return cap

    def start(self, scheduler: Scheduler, rules: HostRules) -> None:
        super().start(scheduler, rules)
        self._rules = rules

    def owned(self, entries: list[Entry]) -> list[Entry]:
        """The entries this shard handles (each host's rule decides its spread)."""
        shard, rules = self._shard, self._rules
        assert rules is not None
        owned = []
        for entry in entries:
            host = entry.host
            if host is None:
                mine = shard.owns(entry)
            else:
                rule = rules.for_host(host)
                whole = rule.paced or self._whole
                mine = shard.owns(entry, rule.max_in_flight, paced=whole)
            if mine:
                owned.append(entry)
        return owned
