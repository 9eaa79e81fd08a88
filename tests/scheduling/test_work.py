"""The work sources: local order and deferral, a shard's part, and which kind a run gets."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from shoal.config import Politeness
from shoal.errors import ConfigError
from shoal.job import Job
from shoal.scheduling import HostRules, Scheduler, Shard, work_source
from shoal.scheduling.backlog import LocalWork
from shoal.scheduling.leases import LeasedWork
from shoal.scheduling.scheduler import HOST_QUEUE
from shoal.scheduling.shards import ShardedWork
from shoal.sources.items import entry_for
from shoal.store import MemoryStore

_SEQ = itertools.count(1)


def job(host: str) -> Job:
    seq = next(_SEQ)
    return Job.admit(seq, entry_for(f"http://{host}/{seq}", seq))


def local(capacity: int = 10_000) -> tuple[Scheduler, LocalWork, MemoryStore]:
    store = MemoryStore()
    scheduler = Scheduler(per_host=1, capacity=capacity, concurrency=8)
    work = LocalWork(store)
    work.start(scheduler, HostRules(Politeness(), 1))
    return scheduler, work, store


async def run_all(scheduler: Scheduler) -> list[Job]:
    """Take and finish every job until the scheduler says there is no more work."""
    ran = []
    while (taken := await asyncio.wait_for(scheduler.wait_job(), 2)) is not None:
        scheduler.release(taken)
        scheduler.finish(taken)
        ran.append(taken)
    return ran


async def test_a_huge_backlog_waits_in_the_store_and_comes_back_in_order() -> None:
    scheduler, work, store = local()
    big = [job("big.test") for _ in range(HOST_QUEUE * 3)]
    await work.hand_on(big)
    assert scheduler.held == HOST_QUEUE  # the rest is deferred to the store
    small = job("small.test")
    await work.hand_on([small])
    assert scheduler.held == HOST_QUEUE + 1  # another host is not held back
    scheduler.close()
    take_back = asyncio.create_task(work.take_back())
    try:
        ran = await run_all(scheduler)
    finally:
        take_back.cancel()
    assert [j for j in ran if j.host == "big.test"] == big  # admission order, all of them
    assert small in ran[:2]  # its turn came at once
    assert await store.take_deferred("big.test", 10) == []


async def test_a_host_with_jobs_in_the_store_defers_its_new_ones_to_keep_their_order() -> None:
    scheduler, work, _ = local()
    await work.hand_on([job("big.test") for _ in range(HOST_QUEUE + 1)])
    assert scheduler.held == HOST_QUEUE
    for _ in range(3):  # its queue drains below the limit...
        taken = await scheduler.wait_job()
        assert taken is not None
        scheduler.release(taken)
        scheduler.finish(taken)
    later = job("big.test")
    await work.hand_on([later])
    assert scheduler.held == HOST_QUEUE - 3  # ...but its older job waits in the store: so does it


async def test_the_workers_wait_while_a_host_has_jobs_in_the_store() -> None:
    scheduler, work, _ = local()
    await work.hand_on([job("big.test") for _ in range(HOST_QUEUE + 5)])
    scheduler.close()
    ran = 0
    while scheduler.held:
        taken = await scheduler.wait_job()
        assert taken is not None
        scheduler.release(taken)
        scheduler.finish(taken)
        ran += 1
    idle = asyncio.create_task(scheduler.wait_job())
    await asyncio.sleep(0.01)
    assert not idle.done()  # five are still in the store: no end yet
    take_back = asyncio.create_task(work.take_back())
    try:
        while (taken := await asyncio.wait_for(idle, 2)) is not None:
            scheduler.release(taken)
            scheduler.finish(taken)
            ran += 1
            idle = asyncio.create_task(scheduler.wait_job())
    finally:
        take_back.cancel()
    assert ran == HOST_QUEUE + 5


async def test_within_capacity_defers_what_does_not_fit() -> None:
    scheduler, work, _ = local(capacity=4)
    await work.hand_on([job(f"h{n}.test") for n in range(6)], within_capacity=True)
    assert scheduler.held == 4  # the committer cannot wait for room: the rest is deferred


async def test_a_shard_admits_its_own_entries_and_gets_its_part_of_each_cap() -> None:
    shards = [Shard(index, 3, 6) for index in range(3)]
    entries = [entry_for(f"http://h{n % 7}.test/{n}", n + 1) for n in range(90)]
    rules = HostRules(Politeness(), 6)
    owned = []
    caps = []
    for shard in shards:
        work = ShardedWork(MemoryStore(), shard, whole_hosts=False)
        work.start(Scheduler(per_host=6, capacity=100), rules)
        owned += work.owned(entries)
        cap = work.host_cap(True)
        assert cap is not None
        caps.append(cap("h1.test", 6, False))
        assert work.host_cap(False) is None  # a map without groups: caps are not split
    assert sorted(owned, key=lambda entry: entry.key) == sorted(entries, key=lambda e: e.key)
    assert sum(caps) == 6


async def test_a_crawl_shard_owns_each_host_whole() -> None:
    shards = [Shard(index, 3, 6) for index in range(3)]
    entries = [entry_for(f"http://one.test/{n}", n + 1) for n in range(30)]
    rules = HostRules(Politeness(), 6)
    owners = set()
    for shard in shards:
        work = ShardedWork(MemoryStore(), shard, whole_hosts=True)
        work.start(Scheduler(per_host=6, capacity=100), rules)
        if work.owned(entries):
            assert len(work.owned(entries)) == len(entries)
            owners.add(shard.index)
    assert len(owners) == 1


class _Leasing(MemoryStore):
    leases = True


async def test_each_store_gets_its_kind_of_work_source() -> None:
    assert type(work_source(MemoryStore(), None, whole_hosts=False)) is LocalWork
    sharded = work_source(MemoryStore(), Shard(0, 2, 4), whole_hosts=False)
    assert type(sharded) is ShardedWork
    leased = work_source(_Leasing(), None, whole_hosts=False)
    assert type(leased) is LeasedWork
    assert not leased.reopens_input and not leased.runs_admitted
    with pytest.raises(ConfigError, match="shoal export"):
        leased.check_output("out.jsonl")
    leased.check_output(None)
    work_source(MemoryStore(), None, whole_hosts=False).check_output("out.jsonl")
