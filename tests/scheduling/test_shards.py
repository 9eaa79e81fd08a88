"""Sharding: every request in one shard, and per-host caps that add up exactly."""

from __future__ import annotations

from collections import Counter

import pytest

from shoal.errors import ConfigError
from shoal.scheduling import Shard, split
from shoal.sources.items import entry_for


@pytest.mark.parametrize(("count", "per_host"), [(1, 8), (2, 8), (3, 8), (4, 2), (5, 1), (8, 3)])
def test_each_entry_has_one_shard_and_caps_add_up(count: int, per_host: int) -> None:
    shards = [Shard(index, count, per_host) for index in range(count)]
    for host_number in range(40):
        host = f"h{host_number}.test"
        caps = [shard.host_cap(host) for shard in shards]
        assert sum(caps) == per_host
        entries = [entry_for(f"http://{host}/{n}", n + 1) for n in range(60)]
        for entry in entries:
            owners = [shard.index for shard in shards if shard.owns(entry)]
            assert len(owners) == 1
            assert caps[owners[0]] > 0  # a request only goes where its host has a slot


def test_duplicates_meet_in_one_shard() -> None:
    shards = [Shard(index, 4, 8) for index in range(4)]
    first = entry_for("http://a.test/x", 1)
    second = entry_for("HTTP://A.TEST:80/x", 2)
    assert first.key == second.key
    assert [s.owns(first) for s in shards] == [s.owns(second) for s in shards]


def test_invalid_entries_are_spread_and_owned_once() -> None:
    shards = [Shard(index, 3, 8) for index in range(3)]
    owners = Counter(sum(s.owns(entry_for("not a url", n)) for s in shards) for n in range(30))
    assert owners == {1: 30}


def test_split_is_even_and_exact() -> None:
    assert [split(10, 3, i) for i in range(3)] == [4, 3, 3]
    assert sum(split(100, 7, i) for i in range(7)) == 100


def test_shard_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Shard(2, 2, 8)
