"""Splitting one job over several processes without breaking its limits.

Every request goes to exactly one shard, chosen from its host and its key, so a duplicate
meets its twin in the same shard's journal; the exception is two requests that share an
``id`` but name different hosts, which may go to two shards (routing by the id alone would
break the split of each host's cap). A host's requests are spread over
``min(per_host, count)`` shards starting at a shard picked by the host's name, and each of
those shards gets its part of the host's in-flight cap: the parts add up to ``per_host``
exactly, so the cap holds over the whole job. Hashes are CRC-32 and the key's own digest,
the same in every process (unlike Python's ``hash``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from shoal.errors import ConfigError
from shoal.job import Entry


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
