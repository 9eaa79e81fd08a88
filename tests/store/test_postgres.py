"""The PostgreSQL store on a real server: admission, claims by host lease, fencing,
takeover after expiry, handover of a host's pace, settings shared by workers, and a
schema made once by workers starting together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from shoal.errors import JournalError
from shoal.job import Entry, Job
from shoal.sources.items import ItemKeys
from shoal.sources.source import Position
from shoal.store import Claim, HostPace, Journal, SinkMark
from shoal.store.postgres import PostgresStore
from shoal.store.postgres.reader import PostgresReader
from tests.postgres import Cluster, asyncpg, cluster, fresh_schema, pg_dsn, wait_for
from tests.store.test_sqlite import entries, ok_result

__all__ = ["cluster", "pg_dsn"]

INPUT = "/data/urls.txt"
Opener = Callable[..., Awaitable[PostgresStore]]
#: The engine's description of its settings, as much of it as the store reads.
SETTINGS: dict[str, Any] = {"attempt_max_s": 0.05, "politeness": {"per_second": None}}


def _journal_of(store: PostgresStore) -> Journal:
    """(mypy checks that a shared store is a journal like every other.)"""
    return store


def no_pace(host: str) -> HostPace:
    return HostPace()


@pytest.fixture
async def open_store(pg_dsn: str) -> AsyncIterator[Opener]:
    opened: list[PostgresStore] = []

    async def opener(
        *, admit: bool = True, settings: dict[str, Any] | None = None, **options: Any
    ) -> PostgresStore:
        options.setdefault("lease_ttl_s", 0.6)
        name = options.pop("job", "job")
        store = PostgresStore(pg_dsn, name, admit=admit, reconnect_s=5, **options)
        opened.append(store)
        await store.open(INPUT)
        await store.describe(SETTINGS if settings is None else settings)
        return store

    try:
        yield opener
    finally:
        for store in opened:
            await store.close()


async def claim_jobs(store: PostgresStore, want: int, within_s: float = 5) -> list[Job]:
    """Claim rounds until ``want`` jobs came back."""
    jobs: list[Job] = []
    async with asyncio.timeout(within_s):
        while len(jobs) < want:
            claim = await store.claim(1000, no_pace)
            assert claim is not None
            jobs += claim.jobs
    return jobs


async def expire(dsn: str, host: str) -> None:
    """End the host's lease by the database's clock (as if its owner had stalled)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE shoal_hosts SET expires_at = now() - interval '1 second' WHERE host = $1",
            host,
        )
    finally:
        await connection.close()


async def as_version_1(connection: Any) -> None:
    """Take the schema back to what version 1 made."""
    await connection.execute("ALTER TABLE shoal_jobs DROP COLUMN paused")
    await connection.execute("ALTER TABLE shoal_workers DROP COLUMN hosts")
    await connection.execute("UPDATE shoal_schema SET version = 1")


async def test_admitted_once_claimed_by_host_and_recorded_once(open_store: Opener) -> None:
    store = await open_store()
    items = ["http://a.test/1", "http://a.test/2", "http://b.test/1", "http://a.test/1", "ftp://x"]
    admitted = await store.admit(entries(*items), Position(5, 80))
    assert len(admitted) == 4  # the duplicate is dropped
    jobs = await claim_jobs(store, 4)
    assert sorted(job.seq for job in jobs) == sorted(job.seq for job in admitted)
    assert all(job.lease > 0 and store.holds(job) for job in jobs)
    assert {job.host for job in jobs} == {"a.test", "b.test", ""}  # the bad line's bucket
    committed = await store.complete([(job, ok_result(job)) for job in jobs], SinkMark())
    assert len(committed.records) == 4 and not committed.refused
    await store.finish_input()
    assert await store.claim(1000, no_pace) is None  # nothing left: the worker may end
    assert (store.counts.admitted, store.counts.ok) == (4, 4)
    async with PostgresReader(store.dsn, "job") as reader:
        summary = await reader.summary()
        records = [record async for record in reader.records()]
    assert (summary.admitted, summary.ok, summary.pending, summary.input_done) == (4, 4, 0, True)
    assert (summary.lines_read, len(records)) == (5, 4)


async def test_a_result_under_a_lost_lease_is_refused(open_store: Opener, pg_dsn: str) -> None:
    first = await open_store()
    await first.admit(entries("http://a.test/1"), Position(1, 16))
    [job] = await claim_jobs(first, 1)
    await expire(pg_dsn, "a.test")
    second = await open_store(admit=False)
    [taken] = await claim_jobs(second, 1)
    assert taken.seq == job.seq and taken.lease > job.lease  # a new fencing token
    late = await first.complete([(job, ok_result(job))], SinkMark())
    assert late.records == [] and late.refused == {job.seq}  # the stalled owner records nothing
    kept = await second.complete([(taken, ok_result(taken))], SinkMark())
    assert len(kept.records) == 1 and not kept.refused
    again = await first.complete([(job, ok_result(job))], SinkMark())
    assert again.records == []
    async with PostgresReader(pg_dsn, "job") as reader:
        assert len([record async for record in reader.records()]) == 1


async def test_an_expired_lease_is_taken_only_after_the_longest_attempt(
    open_store: Opener, pg_dsn: str
) -> None:
    first = await open_store()
    await first.admit(entries("http://a.test/1"), Position(1, 16))
    await claim_jobs(first, 1)
    await expire(pg_dsn, "a.test")
    # Attempts may last 2 s: what the stalled owner started may still be on the wire.
    second = await open_store(admit=False, settings={**SETTINGS, "attempt_max_s": 2.0})
    started = asyncio.get_running_loop().time()
    taken = await claim_jobs(second, 1, within_s=10)  # (a claim waits for work)
    waited = asyncio.get_running_loop().time() - started
    # It expired 1 s ago: the rest of the 2.2 s grace (2 s and a margin) is waited for. The
    # lower bound is the claim (the grace is not cut short); the upper bound is generous (a
    # loaded machine polls late) but still shows the claim waits on the grace, not longer.
    assert taken and 1.0 < waited < 6.0, waited


async def test_a_worker_that_cannot_renew_stops_sending(cluster: Cluster) -> None:
    ttl = 1.2  # the heartbeat renews every 0.4 s; a lease runs 1.0 s past its renewal
    store = PostgresStore(cluster.dsn, "job", admit=True, reconnect_s=5, lease_ttl_s=ttl)
    try:
        await store.open(INPUT)
        await store.describe(SETTINGS)
        await store.admit(entries("http://a.test/1"), Position(1, 16))
        [job] = await claim_jobs(store, 1)
        assert store.holds(job)
        await asyncio.sleep(ttl)
        assert store.holds(job)  # the database up: the heartbeat keeps the lease
        # The database really unreachable: the private cluster stopped (its connections
        # closed with it), so nothing renews the lease.
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(ttl)
        assert not store.holds(job)  # its own clock says the lease may be gone: it stops
        assert await store.claim(1000, no_pace) == Claim(drop=["a.test"])
        # The database back: the worker claims the job again, under a new lease.
        await asyncio.to_thread(cluster.start)
        [again] = await claim_jobs(store, 1, within_s=15)
        assert again.seq == job.seq and again.lease > job.lease
        assert store.holds(again) and not store.holds(job)
    finally:
        await store.close()


async def test_a_host_handed_on_carries_its_pace(open_store: Opener) -> None:
    first = await open_store(hold_s=0.1)
    await first.admit(entries("http://a.test/1", "http://a.test/2"), Position(2, 32))
    [one, two] = await claim_jobs(first, 2)
    await first.complete([(one, ok_result(one))], SinkMark())
    await asyncio.sleep(0.15)
    paces = {"a.test": HostPace(ready_in_s=0.5, paused_for_s=4.0, delay_s=1.5)}
    claim = await first.claim(1000, paces.__getitem__)
    assert claim is not None and claim.drop == ["a.test"]  # held past hold_s: hand it on
    first.let_go([two])  # the scheduler gave back what had not started
    with pytest.raises(TimeoutError):  # it releases the host, then waits for other work
        await asyncio.wait_for(first.claim(1000, paces.__getitem__), 0.5)
    second = await open_store(admit=False)
    async with asyncio.timeout(5):
        while not (claim := await second.claim(1000, no_pace)) or "a.test" not in claim.acquired:
            pass
    pace = claim.acquired["a.test"]
    assert 3.0 < pace.paused_for_s <= 4.0 and pace.delay_s == 1.5 and pace.ready_in_s <= 0.5
    assert [job.seq for job in claim.jobs] == [two.seq]


async def test_a_worker_with_other_politeness_is_refused(open_store: Opener) -> None:
    await open_store(settings={**SETTINGS, "politeness": {"per_second": 1.0}})
    with pytest.raises(JournalError, match=r"politeness\.per_second is 2\.0 here, 1\.0 in the job"):
        await open_store(admit=False, settings={**SETTINGS, "politeness": {"per_second": 2.0}})


async def test_a_worker_needs_the_job_and_one_run_admits(open_store: Opener, pg_dsn: str) -> None:
    with pytest.raises(JournalError, match="no job 'job'"):
        await open_store(admit=False)
    await open_store()
    joined = await open_store()  # a second admitting run works on the job without admitting
    assert not joined.admits


async def test_workers_starting_together_make_the_schema_once(pg_dsn: str) -> None:
    stores = [PostgresStore(pg_dsn, "job", reconnect_s=10) for _ in range(8)]
    try:
        await asyncio.gather(*(store.open(INPUT) for store in stores))
        assert sum(store.admits for store in stores) == 1  # the others work alongside
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    connection = await asyncpg.connect(pg_dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM shoal_schema") == 1
        assert await connection.fetchval("SELECT count(*) FROM shoal_workers") == 8
    finally:
        await connection.close()


async def test_an_engine_on_a_shared_store_writes_no_output_of_its_own(pg_dsn: str) -> None:
    from shoal import ConfigError, Engine, PostgresStore

    store = PostgresStore(pg_dsn, "job")
    async with Engine() as engine:
        with pytest.raises(ConfigError, match="shoal export"):
            await engine.run(["http://a.test/"], journal=store, output="out.jsonl")


async def test_a_claim_never_hands_out_more_than_the_room_and_loses_none(
    open_store: Opener,
) -> None:
    store = await open_store()
    urls = [f"http://h{n % 5}.test/{n}" for n in range(60)]
    await store.admit(entries(*urls), Position(60, 1200))
    seen: list[int] = []
    async with asyncio.timeout(10):
        while len(seen) < 60:
            claim = await store.claim(7, no_pace)
            assert claim is not None and len(claim.jobs) <= 7
            seen += [job.seq for job in claim.jobs]
            await store.complete([(job, ok_result(job)) for job in claim.jobs], SinkMark())
    assert sorted(seen) == list(range(min(seen), min(seen) + 60))  # each once


async def test_a_pause_reaches_every_worker_and_one_that_joins(open_store: Opener) -> None:
    first = await open_store()
    second = await open_store(admit=False)
    first.share_pause(True)
    async with asyncio.timeout(5):  # seen within a second or so
        assert await second.wait_pause(False) is True
    joined = await open_store(admit=False)
    async with asyncio.timeout(0.5):  # a worker joining a paused job knows it at once
        assert await joined.wait_pause(False) is True
    second.share_pause(False)
    async with asyncio.timeout(5):
        assert await first.wait_pause(True) is False
        assert await joined.wait_pause(True) is False
    assert await asyncio.wait_for(first.wait_pause(True), 0.1) is False  # (no wait now)

    async def all_listed() -> bool:
        return {w.worker for w in first.workers} == {first.worker, second.worker, joined.worker}

    await wait_for(all_listed, 5, "every worker listed")
    await second.close()

    async def stopped_left_out() -> bool:  # a worker that stops is listed no more
        return {w.worker for w in first.workers} == {first.worker, joined.worker}

    await wait_for(stopped_left_out, 5, "the stopped worker left out")


async def test_an_older_schema_is_migrated(open_store: Opener, pg_dsn: str) -> None:
    await open_store()
    connection = await asyncpg.connect(pg_dsn)
    try:
        await as_version_1(connection)
        joined = await open_store(admit=False)
        joined.share_pause(True)

        async def paused() -> bool:
            return bool(await connection.fetchval("SELECT paused FROM shoal_jobs"))

        await wait_for(paused, 5, "the job paused in the migrated schema")
        assert await connection.fetchval("SELECT max(version) FROM shoal_schema") == 2
    finally:
        await connection.close()


async def test_jobs_of_two_schemas_each_admit(pg_dsn: str) -> None:
    # Both jobs are job 1 of their schema: their admission locks must not be one lock.
    async with fresh_schema() as other_dsn:
        stores = [PostgresStore(dsn, "job", reconnect_s=5) for dsn in (pg_dsn, other_dsn)]
        try:
            for store in stores:
                await store.open(INPUT)
            assert [store.admits for store in stores] == [True, True]
        finally:
            for store in stores:
                await store.close()


async def test_a_host_in_upper_case_is_held_by_its_worker(open_store: Opener) -> None:
    store = await open_store()
    await store.admit(entries("http://A.TEST/1"), Position(1, 16))
    [job] = await claim_jobs(store, 1)
    assert job.host == "a.test" and store.holds(job)  # (else it would never be sent)


def items(count: int) -> list[Entry]:
    keys = ItemKeys()
    return [keys.entry({"n": n}, n + 1) for n in range(count)]


async def test_items_in_no_group_are_spread_over_buckets_unless_paced(open_store: Opener) -> None:
    store = await open_store()
    await store.admit(items(200), Position(200, 0))
    jobs = await claim_jobs(store, 200)
    buckets = {job.host for job in jobs}
    assert len(buckets) > 32 and all(host.startswith("~") for host in buckets)
    assert all(store.holds(job) for job in jobs)  # each under its bucket's lease
    await store.close()

    for n, politeness in enumerate(
        [{"per_second": 5.0}, {"delay_s": 0.0, "hosts": {"*": {"delay_s": 0.5}}}]
    ):
        paced = await open_store(settings={**SETTINGS, "politeness": politeness}, job=f"p{n}")
        await paced.admit(items(20), Position(20, 0))
        assert {job.host for job in await claim_jobs(paced, 20)} == {""}  # one pace for all


async def test_a_reader_brings_an_older_schema_up_to_date(open_store: Opener, pg_dsn: str) -> None:
    await open_store()
    connection = await asyncpg.connect(pg_dsn)
    try:
        await as_version_1(connection)
    finally:
        await connection.close()
    async with PostgresReader(pg_dsn, "job") as reader:  # (shoal pause, from anywhere)
        await reader.share_pause(True)
        assert await reader.paused()


async def test_a_pause_made_here_then_undone_elsewhere_is_seen(open_store: Opener) -> None:
    here = await open_store()
    there = await open_store(admit=False)
    waiting = asyncio.create_task(here.wait_pause(False))  # as the engine's follower waits
    here.share_pause(True)  # its own dashboard pauses the job
    assert await asyncio.wait_for(waiting, 1) is True
    async with asyncio.timeout(5):  # seen by the other worker...
        assert await there.wait_pause(False) is True
    there.share_pause(False)  # ...which resumes it: the first worker must follow
    async with asyncio.timeout(5):
        assert await here.wait_pause(True) is False


async def test_a_summary_is_one_snapshot_while_workers_commit(open_store: Opener) -> None:
    """``shoal status --store``: its counts and its status classes are read at one moment,
    so with every result a 200 the ok count and the 2xx count agree in every reading."""
    store = await open_store()
    count = 600
    await store.admit(entries(*(f"http://h{n % 7}.test/{n}" for n in range(count))), Position(1, 1))
    jobs = await claim_jobs(store, count, within_s=30)
    readings: list[tuple[int, int]] = []

    async def commit() -> None:
        for start in range(0, count, 3):
            batch = jobs[start : start + 3]
            await store.complete([(job, ok_result(job)) for job in batch], SinkMark())

    async def read() -> None:
        async with PostgresReader(store.dsn, "job") as reader:
            while not writer.done():
                summary = await reader.summary()
                readings.append((summary.ok, summary.by_status.get("2xx", 0)))

    writer = asyncio.create_task(commit())
    await asyncio.gather(writer, read())
    assert len(readings) > 20
    moving = [ok for ok, _ in readings if 0 < ok < count]
    assert moving, "no reading while the workers were committing"
    assert [(ok, classes) for ok, classes in readings if ok != classes] == []
