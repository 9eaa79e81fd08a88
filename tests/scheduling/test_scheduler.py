"""The scheduler: per-host caps, round-robin fairness, backpressure, retries, stop and close."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from shoal.config import Politeness
from shoal.job import Job
from shoal.result import Error, ErrorKind, Result
from shoal.scheduling import HostRules, Scheduler
from shoal.scheduling.scheduler import HOST_QUEUE
from shoal.sources.items import entry_for

_SEQ = itertools.count(1)


def job(host: str, path: str = "/") -> Job:
    seq = next(_SEQ)
    return Job.admit(seq, entry_for(f"http://{host}{path}", seq))


async def settle(rounds: int = 5) -> None:
    """Let every ready task run a few steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def take(scheduler: Scheduler) -> Job | None:
    """The next job, failing the test instead of hanging when none comes."""
    return await asyncio.wait_for(scheduler.wait_job(), 1.0)


async def take_job(scheduler: Scheduler) -> Job:
    got = await take(scheduler)
    assert got is not None
    return got


async def done(scheduler: Scheduler, finished: Job) -> None:
    scheduler.release(finished)
    scheduler.finish(finished)


def test_admitted_job_host() -> None:
    made = job("a.test", "/x")
    assert made.host == "a.test"
    assert made.error is None


# -- per-host caps ----------------------------------------------------------------------------


async def test_per_host_cap_holds_back_a_busy_host_but_not_others() -> None:
    scheduler = Scheduler(per_host=1, capacity=100)
    a1, a2, b1 = job("a.test"), job("a.test"), job("b.test")
    for queued in (a1, a2, b1):
        scheduler.add(queued)
    assert await take(scheduler) is a1
    assert await take(scheduler) is b1  # a.test is at its cap
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not waiting.done()  # a2 must wait for a.test's slot
    scheduler.release(a1)
    scheduler.finish(a1)
    assert await asyncio.wait_for(waiting, 1) is a2
    assert scheduler.in_flight == 2


@pytest.mark.parametrize("per_host", [1, 2, 3])
async def test_per_host_cap_is_never_exceeded_under_load(per_host: int) -> None:
    scheduler = Scheduler(per_host=per_host, capacity=10_000)
    hosts = ["a.test", "b.test", "c.test"]
    jobs = [job(hosts[number % 3], f"/{number}") for number in range(90)]
    for queued in jobs:
        scheduler.add(queued)
    scheduler.close()
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    finished: list[Job] = []

    async def worker(steps: int) -> None:
        while (got := await scheduler.wait_job()) is not None:
            running[got.host] += 1
            peak[got.host] = max(peak[got.host], running[got.host])
            assert running[got.host] <= per_host
            await settle(steps)
            running[got.host] -= 1
            scheduler.release(got)
            scheduler.finish(got)
            finished.append(got)

    await asyncio.wait_for(asyncio.gather(*(worker(1 + k % 4) for k in range(12))), 5)
    assert sorted(job.seq for job in finished) == sorted(job.seq for job in jobs)
    # With 12 workers and 3 hosts, every host reaches (and never passes) its cap.
    assert dict(peak) == dict.fromkeys(hosts, per_host)
    assert scheduler.held == 0
    assert scheduler.in_flight == 0


# -- fairness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("per_host", [1, 4])
async def test_small_hosts_are_served_early_not_after_a_big_host(per_host: int) -> None:
    scheduler = Scheduler(per_host=per_host, capacity=10_000)
    big = [job("big.test", f"/{number}") for number in range(500)]
    small = [job(f"s{number}.test") for number in range(10)]
    for queued in big + small:  # the big host's queue is there first
        scheduler.add(queued)
    scheduler.close()
    order: list[Job] = []
    while (got := await take(scheduler)) is not None:
        order.append(got)
        await done(scheduler, got)
    assert len(order) == 510
    small_turns = [index for index, served in enumerate(order) if served.host != "big.test"]
    # Round robin: each small host gets a turn within the first round over the 11 hosts.
    assert max(small_turns) < 11
    assert [served.host for served in order[:11]].count("big.test") == 1
    # Within one host, jobs keep their order.
    assert [served.seq for served in order if served.host == "big.test"] == [b.seq for b in big]


async def test_a_host_that_arrives_late_gets_the_next_turn() -> None:
    scheduler = Scheduler(per_host=8, capacity=10_000)
    for number in range(100):
        scheduler.add(job("big.test", f"/{number}"))
    first = [await take_job(scheduler) for _ in range(3)]
    assert {got.host for got in first} == {"big.test"}
    late = job("late.test")
    scheduler.add(late)
    for got in first:
        await done(scheduler, got)
    following = [await take_job(scheduler) for _ in range(2)]
    assert late in following


async def test_concurrent_workers_share_turns_across_hosts() -> None:
    scheduler = Scheduler(per_host=2, capacity=10_000)
    for number in range(200):
        scheduler.add(job("big.test", f"/{number}"))
    small = [job(f"s{number}.test") for number in range(6)]
    for queued in small:
        scheduler.add(queued)
    scheduler.close()
    served: list[Job] = []

    async def worker() -> None:
        while (got := await scheduler.wait_job()) is not None:
            served.append(got)
            await settle(2)
            await done(scheduler, got)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(4))), 5)
    assert len(served) == 206
    small_turns = [index for index, got in enumerate(served) if got in small]
    assert max(small_turns) < 20


# -- backpressure -----------------------------------------------------------------------------


async def test_wait_room_blocks_at_capacity_until_a_job_finishes() -> None:
    scheduler = Scheduler(per_host=10, capacity=3)
    await asyncio.wait_for(scheduler.wait_room(), 1)  # room at the start
    jobs = [job("a.test", f"/{number}") for number in range(3)]
    for queued in jobs[:2]:
        scheduler.add(queued)
    await asyncio.wait_for(scheduler.wait_room(), 1)  # still room for one more
    scheduler.add(jobs[2])
    assert scheduler.held == 3
    room = asyncio.create_task(scheduler.wait_room())
    await settle()
    assert not room.done()
    got = await take_job(scheduler)
    scheduler.release(got)
    await settle()
    assert not room.done()  # released but not final: still held
    scheduler.finish(got)
    await asyncio.wait_for(room, 1)
    assert scheduler.held == 2


async def test_jobs_waiting_to_retry_still_count_as_held() -> None:
    scheduler = Scheduler(per_host=10, capacity=1)
    scheduler.add(job("a.test"))
    got = await take_job(scheduler)
    scheduler.release(got)
    scheduler.retry_later(got, 0.05)
    assert scheduler.held == 1
    room = asyncio.create_task(scheduler.wait_room())
    await settle()
    assert not room.done()
    again = await take_job(scheduler)
    assert again is got
    await done(scheduler, again)
    await asyncio.wait_for(room, 1)


# -- retries ----------------------------------------------------------------------------------


async def test_retry_later_delays_the_job() -> None:
    loop = asyncio.get_running_loop()
    scheduler = Scheduler(per_host=1, capacity=10)
    scheduler.add(job("a.test"))
    got = await take_job(scheduler)
    scheduler.release(got)
    started = loop.time()
    scheduler.retry_later(got, 0.1)
    assert scheduler.waiting_retry == 1
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()  # the waiter has looked: nothing is due yet
    assert not waiting.done()
    assert await asyncio.wait_for(waiting, 1) is got
    assert loop.time() - started >= 0.09  # (a stall of this loop can only lengthen it)
    assert scheduler.waiting_retry == 0
    assert scheduler.held == 1


async def test_retries_come_back_in_due_order() -> None:
    scheduler = Scheduler(per_host=5, capacity=10)
    late, early = job("a.test", "/late"), job("b.test", "/early")
    scheduler.add(late)
    scheduler.add(early)
    first, second = await take_job(scheduler), await take_job(scheduler)
    for got in (first, second):
        scheduler.release(got)
    scheduler.retry_later(late, 0.15)
    scheduler.retry_later(early, 0.05)
    assert scheduler.waiting_retry == 2
    assert await take(scheduler) is early
    assert await take(scheduler) is late


async def test_a_ready_job_is_not_held_up_by_a_retry() -> None:
    scheduler = Scheduler(per_host=5, capacity=10)
    scheduler.add(job("a.test", "/retry"))
    got = await take_job(scheduler)
    scheduler.release(got)
    scheduler.retry_later(got, 0.2)
    fresh = job("b.test", "/fresh")
    scheduler.add(fresh)
    # Handed out within a few steps of the loop, no timer between: not after the retry's
    # 0.2 s (a wall-clock bound would fail on a stall of the loop, not on a hold-up).
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert waiting.done() and waiting.result() is fresh
    assert scheduler.waiting_retry == 1


async def test_retry_respects_the_per_host_cap() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    first, second = job("a.test", "/1"), job("a.test", "/2")
    scheduler.add(first)
    scheduler.add(second)
    got = await take_job(scheduler)
    assert got is first
    scheduler.release(got)
    scheduler.retry_later(got, 0.01)
    running = await take_job(scheduler)
    assert running is second
    await asyncio.sleep(0.05)  # the retry is due, but a.test's one slot is taken
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not waiting.done()
    await done(scheduler, running)
    assert await asyncio.wait_for(waiting, 1) is first


# -- stop -------------------------------------------------------------------------------------


async def test_stop_gives_waiting_workers_none() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    waiters = [asyncio.create_task(scheduler.wait_job()) for _ in range(3)]
    await settle()
    assert not any(waiter.done() for waiter in waiters)
    scheduler.stop()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [None, None, None]
    assert scheduler.stopped


async def test_stop_hands_out_no_more_jobs() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    running = job("a.test", "/running")
    scheduler.add(running)
    scheduler.add(job("a.test", "/queued"))
    scheduler.add(job("b.test", "/queued"))
    assert await take(scheduler) is running
    retried = await take_job(scheduler)
    scheduler.release(retried)
    scheduler.retry_later(retried, 0.01)
    scheduler.stop()
    assert scheduler.waiting_retry == 0
    assert await take(scheduler) is None
    scheduler.add(job("c.test"))
    assert await take(scheduler) is None
    await asyncio.sleep(0.03)  # past the retry's due time: it does not come back
    assert await take(scheduler) is None
    # The job in flight still finishes cleanly.
    await done(scheduler, running)
    assert scheduler.in_flight == 0


async def test_retry_later_after_stop_is_dropped() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    scheduler.add(job("a.test"))
    got = await take_job(scheduler)
    scheduler.stop()
    scheduler.release(got)
    scheduler.retry_later(got, 0.0)
    assert scheduler.waiting_retry == 0


async def test_stop_frees_a_feeder_waiting_for_room() -> None:
    scheduler = Scheduler(per_host=1, capacity=2)
    scheduler.add(job("a.test", "/1"))
    scheduler.add(job("a.test", "/2"))
    room = asyncio.create_task(scheduler.wait_room())
    await settle()
    assert not room.done()
    scheduler.stop()
    await asyncio.wait_for(room, 1)


async def test_jobs_added_after_stop_do_not_block_the_feeder() -> None:
    scheduler = Scheduler(per_host=1, capacity=4)
    for number in range(3):
        scheduler.add(job("a.test", f"/{number}"))
    scheduler.stop()
    # The feeder was reading its next batch when stop came: it adds it, then waits for room.
    for number in range(3, 6):
        scheduler.add(job("a.test", f"/{number}"))
    await asyncio.wait_for(scheduler.wait_room(), 0.2)


# -- close ------------------------------------------------------------------------------------


async def test_close_on_an_empty_scheduler_ends_workers() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    scheduler.close()
    assert await asyncio.wait_for(waiting, 1) is None
    assert await take(scheduler) is None


async def test_close_ends_workers_once_held_jobs_finish() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    first, second = job("a.test", "/1"), job("a.test", "/2")
    scheduler.add(first)
    scheduler.add(second)
    scheduler.close()
    assert await take(scheduler) is first
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not waiting.done()
    await done(scheduler, first)
    assert await asyncio.wait_for(waiting, 1) is second  # queued work is still handed out
    idle = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not idle.done()  # second is in flight and might be retried
    scheduler.release(second)
    scheduler.retry_later(second, 0.01)
    assert await asyncio.wait_for(idle, 1) is second
    other_idle = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not other_idle.done()
    await done(scheduler, second)
    assert await asyncio.wait_for(other_idle, 1) is None
    assert await take(scheduler) is None


# -- cancellation -----------------------------------------------------------------------------


async def test_cancelled_waiter_does_not_swallow_the_next_job() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    cancelled = asyncio.create_task(scheduler.wait_job())
    await settle()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    added = job("a.test")
    scheduler.add(added)
    assert await take(scheduler) is added
    assert scheduler.in_flight == 1


async def test_cancelled_waiter_among_others() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    first = asyncio.create_task(scheduler.wait_job())
    second = asyncio.create_task(scheduler.wait_job())
    await settle()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    added = job("a.test")
    scheduler.add(added)
    assert await asyncio.wait_for(second, 1) is added


async def test_job_handed_to_a_worker_cancelled_before_it_runs_is_given_back() -> None:
    scheduler = Scheduler(per_host=1, capacity=10)
    worker = asyncio.create_task(scheduler.wait_job())
    await settle()
    handed = job("a.test")
    scheduler.add(handed)  # the waiter's result is set now, but the worker has not resumed
    assert scheduler.in_flight == 1
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    # The job went back to its host's queue, and the host slot is free again.
    assert scheduler.in_flight == 0
    assert await take(scheduler) is handed
    assert scheduler.in_flight == 1
    await done(scheduler, handed)
    scheduler.close()
    assert await take(scheduler) is None


# -- deferring a host's backlog to the store ------------------------------------------------


def _fill(scheduler: Scheduler, host: str, count: int) -> int:
    """Offer ``count`` jobs of ``host``; how many the scheduler wanted in memory."""
    wanted = 0
    for _ in range(count):
        offered = job(host)
        if scheduler.wants(offered):
            scheduler.add(offered)
            wanted += 1
    return wanted


@pytest.mark.parametrize(
    ("per_host", "concurrency", "politeness", "kept"),
    [
        (4, 4, Politeness(), "all"),  # it alone keeps every worker busy
        (8, 4, Politeness(), "all"),
        (4, 8, Politeness(), "queue"),  # workers would idle: read on for other hosts
        (4, 4, Politeness(per_second=100.0), "queue"),  # paced: it cannot fill them
        (4, 4, Politeness(adaptive=True), "queue"),  # it may be slowed down
    ],
)
async def test_only_a_host_that_cannot_fill_the_workers_is_deferred(
    per_host: int, concurrency: int, politeness: Politeness, kept: str
) -> None:
    scheduler = Scheduler(
        per_host=per_host,
        capacity=10_000,
        concurrency=concurrency,
        rules=HostRules(politeness, per_host),
    )
    wanted = _fill(scheduler, "big.test", HOST_QUEUE * 2)
    assert wanted == (HOST_QUEUE * 2 if kept == "all" else HOST_QUEUE)


async def test_a_saturating_host_still_waits_for_room() -> None:
    capacity = HOST_QUEUE + 10
    scheduler = Scheduler(per_host=4, capacity=capacity, concurrency=4)
    assert _fill(scheduler, "big.test", capacity) == capacity  # past HOST_QUEUE, in memory
    waiting = asyncio.create_task(scheduler.wait_room())
    await settle()
    assert not waiting.done()  # memory stays bounded by the capacity
    finished = await take_job(scheduler)
    await done(scheduler, finished)
    await asyncio.wait_for(waiting, 1)


# -- a paced host waits for its request to be sent ------------------------------------------


def paced(per_second: float) -> Scheduler:
    politeness = Politeness(per_second=per_second, burst=10)
    return Scheduler(per_host=8, capacity=100, rules=HostRules(politeness, 8))


async def test_a_paced_host_starts_nothing_until_its_request_is_sent() -> None:
    scheduler = paced(1000.0)  # the burst lets ten go at once: only the send holds them
    first, second = job("p.test", "/1"), job("p.test", "/2")
    for queued in (first, second):
        scheduler.add(queued)
    assert await take(scheduler) is first
    assert first.on_sent is not None
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not waiting.done()  # the first is still connecting
    first.on_sent(first)
    assert first.on_sent is None
    assert await asyncio.wait_for(waiting, 1) is second
    assert scheduler.in_flight == 2


async def test_an_attempt_that_ends_unsent_frees_its_paced_host() -> None:
    scheduler = paced(1000.0)
    first, second = job("p.test", "/1"), job("p.test", "/2")
    for queued in (first, second):
        scheduler.add(queued)
    assert await take(scheduler) is first
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not waiting.done()
    await done(scheduler, first)  # its connection failed: never sent
    assert first.on_sent is None
    assert await asyncio.wait_for(waiting, 1) is second


async def test_an_unpaced_host_has_no_send_to_wait_for() -> None:
    scheduler = Scheduler(per_host=8, capacity=100)
    first, second = job("u.test", "/1"), job("u.test", "/2")
    for queued in (first, second):
        scheduler.add(queued)
    assert await take(scheduler) is first
    assert first.on_sent is None
    assert await take(scheduler) is second


async def test_a_paused_scheduler_hands_out_nothing_until_resumed() -> None:
    scheduler = Scheduler(per_host=8, capacity=100)
    scheduler.pause()
    first = job("z.test", "/1")
    scheduler.add(first)
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert scheduler.paused and not waiting.done()
    scheduler.resume()
    assert await asyncio.wait_for(waiting, 1) is first
    scheduler.pause()
    second = job("z.test", "/2")
    scheduler.add(second)
    late = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not late.done()
    scheduler.stop()  # a paused scheduler still stops
    assert await asyncio.wait_for(late, 1) is None


# -- connection health belongs to the endpoint, not the host name ------------------------------


def refused(of: Job) -> Result:
    return Result(url=of.request.url, error=Error(ErrorKind.CONNECT, "Connection refused"))


async def test_a_dead_port_does_not_hold_back_the_other_ports_of_its_host() -> None:
    politeness = Politeness(dead_after=2, dead_cooldown_s=0.05, dead_probes=1)
    scheduler = Scheduler(per_host=2, capacity=100, rules=HostRules(politeness, 2))
    dead = [job("a.test:1", f"/d{n}") for n in range(5)]
    alive = [job("a.test:2", f"/a{n}") for n in range(5)]
    for pair in zip(dead, alive, strict=True):
        for queued in pair:
            scheduler.add(queued)
    for _ in range(2):  # two rounds: each fails its dead one, and the second parks it
        first, second = await take_job(scheduler), await take_job(scheduler)
        assert {first.host, second.host} == {"a.test"}
        for ended in (first, second):
            scheduler.release(ended, refused(ended) if ended in dead else None)
            scheduler.finish(ended)
    # Parked: its jobs wait aside, and every job for the other port goes at once.
    for expected in alive[2:]:
        served = await take_job(scheduler)
        assert served is expected and scheduler.refusal(served) is None
        await done(scheduler, served)
    [parked] = scheduler.host_states()
    assert (parked.state, parked.endpoint, parked.failures) == ("parked", "http://a.test:1", 2)
    assert parked.queued == 3  # waiting aside
    # After the cool-down the first waiting job probes it; it fails: given up, the rest
    # come back to fail without being sent.
    probe = await take_job(scheduler)
    assert probe is dead[2]
    scheduler.release(probe, refused(probe))
    scheduler.finish(probe)
    for expected in dead[3:]:
        served = await take_job(scheduler)
        assert served is expected
        refusal = scheduler.refusal(served)
        assert refusal is not None and refusal.message.startswith("http://a.test:1 given up")
        await done(scheduler, served)
    [shown] = scheduler.host_states()
    assert (shown.host, shown.state, shown.endpoint) == ("a.test", "dead", "http://a.test:1")
    scheduler.close()
    assert await take(scheduler) is None


async def test_jobs_waiting_for_a_parked_endpoint_leave_the_room_to_others() -> None:
    politeness = Politeness(dead_after=1, dead_cooldown_s=60)
    scheduler = Scheduler(per_host=1, capacity=4, rules=HostRules(politeness, 1))
    first = job("a.test:1", "/0")
    scheduler.add(first)
    await take_job(scheduler)
    scheduler.release(first, refused(first))  # parked for a minute
    scheduler.finish(first)
    for n in range(4):
        scheduler.add(job("a.test:1", f"/{n + 1}"))
    assert not scheduler.room
    fine = job("a.test:2", "/ok")
    waiting = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not waiting.done()  # the four went aside, so nothing to hand out...
    assert scheduler.room  # ...and they leave the room to the rest
    scheduler.add(fine)
    assert await asyncio.wait_for(waiting, 1) is fine
    scheduler.stop()


async def parked_with_waiting(count: int, cooldown_s: float = 0.05) -> tuple[Scheduler, list[Job]]:
    """A scheduler whose a.test:1 is parked, ``count`` jobs queued for it."""
    politeness = Politeness(dead_after=1, dead_cooldown_s=cooldown_s, dead_probes=2)
    scheduler = Scheduler(per_host=4, capacity=100, rules=HostRules(politeness, 4))
    first = job("a.test:1", "/0")
    scheduler.add(first)
    await take_job(scheduler)
    scheduler.release(first, refused(first))
    scheduler.finish(first)
    waiting = [job("a.test:1", f"/{n + 1}") for n in range(count)]
    for queued in waiting:
        scheduler.add(queued)
    return scheduler, waiting


async def test_a_probe_that_ends_without_an_outcome_lets_the_next_job_probe() -> None:
    scheduler, waiting = await parked_with_waiting(3)
    probe = await take_job(scheduler)  # after the cool-down
    assert probe is waiting[0]
    assert scheduler.in_flight == 1
    scheduler.release(probe)  # refused by robots.txt, say: it never connected
    scheduler.finish(probe)
    assert await take_job(scheduler) is waiting[1]  # probes in its place
    assert scheduler.in_flight == 1  # still one at a time


async def test_dropping_a_host_returns_the_jobs_waiting_for_its_endpoint() -> None:
    scheduler, waiting = await parked_with_waiting(3, cooldown_s=60)
    lonely = asyncio.create_task(scheduler.wait_job())
    await settle()  # the three go aside
    assert not lonely.done()
    assert scheduler.drop_host("a.test") == waiting
    assert scheduler.held == 0
    scheduler.close()
    assert await asyncio.wait_for(lonely, 1) is None


async def test_a_retry_let_go_for_a_dropped_host_frees_its_room_and_ends_the_workers() -> None:
    scheduler = Scheduler(per_host=1, capacity=1)
    only = job("a.test")
    scheduler.add(only)
    running = await take_job(scheduler)
    assert scheduler.drop_host("a.test") == []  # in flight: it finishes here
    scheduler.release(running)
    scheduler.close()
    room = asyncio.create_task(scheduler.wait_room())
    idle = asyncio.create_task(scheduler.wait_job())
    await settle()
    assert not room.done()  # the one job held fills the room...
    assert not idle.done()  # ...and may still be retried
    assert not scheduler.retry_later(running, 0.01)  # its host is gone: let go
    assert scheduler.held == 0
    await asyncio.wait_for(room, 1)  # the room it held is free...
    assert await asyncio.wait_for(idle, 1) is None  # ...and nothing is left to run
