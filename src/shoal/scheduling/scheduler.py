"""The scheduler: holds admitted jobs and hands them to workers, one host slot at a time.

Jobs wait in one queue per host (:mod:`.queues`). Hosts with queued work, a free slot and
nothing to wait for form a ring (:mod:`.ring`), and a worker takes the next job from the host
at the front, which then goes to the back: so a host with a million queued jobs gets the same
turns as a host with one. A host that must wait (its rate, its delay, a Retry-After pause),
an endpoint parked after connection failures and a job waiting to be retried all sit in one
heap of timers (:mod:`.timers`): waiting hosts cost nothing until they are due. The scheduler never
does I/O; it decides *when*. Which jobs it gets, and what waits in the store meanwhile, is
the run's work source's (:mod:`.work`).

Caps and pacing are a host name's (:class:`HostControl`); connection health is an endpoint's
(:class:`Health`: scheme, host and port). A host with an unhealthy endpoint is tracked, and only
then is each job it starts asked about: a job for a parked endpoint waits aside on it while the
host's other jobs go on.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Coroutine
from typing import Any

from shoal.config import Politeness
from shoal.job import Job
from shoal.outcome import Finished
from shoal.result import Error
from shoal.scheduling.endpoints import UNREACHABLE, Endpoint
from shoal.scheduling.hosts import HostState
from shoal.scheduling.queues import HostCap, HostQueue, HostQueues
from shoal.scheduling.ring import HOST_QUEUE, LOW_QUEUE, QueueListener, Ring
from shoal.scheduling.rules import HostRules
from shoal.scheduling.timers import Timers
from shoal.store.store import HostPace

__all__ = ["HOST_QUEUE", "LOW_QUEUE", "Scheduler"]


class Scheduler:
    """Per-host caps and pacing, and fair, round-robin dispatch over hosts.

    ``rules`` give each host its settings (by default every host gets ``per_host`` in
    flight and no pacing); ``host_cap`` gives a shard's part of a host's cap. ``capacity``
    bounds the jobs held (queued, waiting to retry, or in flight); the feeder waits for
    room with :meth:`wait_room`, so memory stays bounded whatever the input size.
    ``concurrency`` is the number of workers: a host that can keep them all busy alone has
    its backlog held in memory rather than deferred to the store (see :meth:`wants`). Jobs
    waiting aside for a parked endpoint are held too, but up to ``capacity`` of them leave
    the room to the rest, so a dead endpoint's backlog does not stop the input being read.
    """

    def __init__(
        self,
        *,
        per_host: int,
        capacity: int,
        host_cap: HostCap | None = None,
        rules: HostRules | None = None,
        retry_after_max_s: float = math.inf,
        rng: random.Random | None = None,
        concurrency: int | None = None,
    ) -> None:
        rules = rules or HostRules(Politeness(), per_host)
        self._health = rules.politeness.dead_after > 0
        self._capacity = capacity
        self._queues = HostQueues(
            rules,
            host_cap=host_cap,
            concurrency=concurrency,
            retry_after_max_s=retry_after_max_s,
        )
        # (The table's own dict and set, read directly on the hot paths.)
        self._hosts = self._queues.hosts
        self._notable = self._queues.notable
        self._timers: Timers[Job | HostQueue | Endpoint] = Timers(self._due)
        self._ring = ring = Ring(
            self._queues, self._timers, self._check_room, rng or random.Random()
        )
        # (The ring's own methods, called directly on the hot paths.)
        self._consider = ring.consider
        self._dispatch = ring.dispatch
        self._retries = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._held = 0
        self._expected = 0
        self._closed = False
        self._stopped = False
        #: Hosts given up to another owner (a shared job), until taken over again.
        self._dropped: set[str] = set()

    # -- what the engine reads ---------------------------------------------------------------

    @property
    def held(self) -> int:
        """Jobs admitted and not yet final."""
        return self._held

    @property
    def in_flight(self) -> int:
        """Jobs handed out and not yet released."""
        return self._ring.in_flight

    @property
    def waiting_retry(self) -> int:
        return self._retries

    @property
    def stopped(self) -> bool:
        return self._stopped

    def host_states(self) -> tuple[HostState, ...]:
        """The hosts that are paused, parked, throttled or given up (at most 50)."""
        return self._queues.states(self._now())

    def busiest(self, limit: int) -> tuple[HostState, ...]:
        """The ``limit`` hosts with the most requests in flight and queued, busiest first
        (a walk over the hosts the scheduler holds: for a dashboard, not a hot path)."""
        return self._queues.busiest(limit, self._now())

    def keep_apart(self, name: str, delay_s: float) -> None:
        """Start requests to host ``name`` at least ``delay_s`` apart from now on."""
        host = self._queues.get(name)
        host.control.keep_apart(delay_s, self._now())
        if not host.queue and not host.in_flight:
            self._queues.rest(host, self._now())

    def verified(self, name: str) -> None:
        """Host ``name``'s robots.txt is read: it may have more than one request in flight."""
        host = self._hosts.get(name)
        if host is not None and host.control.unverified:
            host.control.verify()
            self._consider(host)

    # -- hosts that come and go with their owner (a shared job's host leases) ---------------

    def take_over(self, name: str, pace: HostPace) -> None:
        """Host ``name`` is this worker's now, with the pace its last owner left it."""
        self._dropped.discard(name)
        if pace.ready_in_s or pace.paused_for_s or pace.delay_s:
            host = self._queues.get(name)
            host.control.carry_over(self._now(), pace.ready_in_s, pace.paused_for_s, pace.delay_s)
            if host.control.state(self._now()) != "ok":
                self._notable.add(name)
            if not host.queue and not host.in_flight:
                self._queues.rest(host, self._now())

    def pace_of(self, name: str) -> HostPace:
        """The pace host ``name`` carries to its next owner."""
        host = self._hosts.get(name)
        if host is None:
            return HostPace()
        return HostPace(*host.control.carried(self._now()))

    def drop_host(self, name: str) -> list[Job]:
        """Give host ``name`` up: its queued jobs and those waiting to retry are taken out
        and returned (they did not run here); its jobs in flight finish, and any retry they
        ask for is refused (:meth:`retry_later`)."""
        self._dropped.add(name)
        host = self._hosts.get(name)
        dropped: list[Job] = []
        if host is not None:
            dropped += host.queue
            host.queue.clear()
            if host.health is not None:
                aside = host.health.drop()
                self._ring.aside -= len(aside)
                dropped += aside
        for item in self._timers.remove(lambda item: isinstance(item, Job) and item.host == name):
            assert isinstance(item, Job)
            dropped.append(item)
            self._retries -= 1
        self._held -= len(dropped)
        self._check_room()
        self._wake_if_finished()
        return dropped

    def refusal(self, job: Job) -> Error | None:
        """Why ``job`` must fail without being sent (its endpoint was given up), if it must."""
        if not self._notable:
            return None  # no host is in any state but ok, so no endpoint was given up
        host = self._hosts.get(job.host)
        return None if host is None or host.health is None else host.health.refusal(job)

    # -- feeding -----------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Take a new job (the caller waited for room, and asked :meth:`wants`); ignored
        once stopped."""
        if self._stopped:
            return
        self._held += 1
        if self._held >= self._capacity and self._load() >= self._capacity:
            self._room.clear()
        self._enqueue(job)

    async def wait_room(self) -> None:
        """Wait until fewer than ``capacity`` jobs are held."""
        await self._room.wait()

    # -- what waits in memory: the work source defers the rest to the store -----------------

    def wants(self, job: Job) -> bool:
        """Whether ``job``'s host has room for it in memory: fewer than :data:`HOST_QUEUE`
        queued, so a host with a huge backlog cannot fill the scheduler and keep the input's
        other hosts from being read (the work source defers the rest to the store).

        A host that can keep every worker busy by itself always has room: reading on to
        find other hosts would find no idle worker to give them, and the trip through the
        store costs every one of its requests. Its backlog waits in memory up to the
        capacity, where the feeder waits for room.
        """
        host = self._hosts.get(job.host)
        return host is None or len(host.queue) < HOST_QUEUE or host.saturates

    def queued(self, name: str) -> int:
        """How many jobs host ``name`` has queued."""
        host = self._hosts.get(name)
        return 0 if host is None else len(host.queue)

    def watch_queues(self, listener: QueueListener | None) -> None:
        """Tell ``listener`` the host of each job taken while its queue is down to
        :data:`LOW_QUEUE` jobs or fewer (``None``: tell no one)."""
        self._ring.listener = listener

    def close(self) -> None:
        """The input is all in: workers end once no job is held or expected."""
        self._closed = True
        self._wake_if_finished()

    def expect(self) -> None:
        """The work may grow (a final job's follow-ups are on their way to the store, a
        host has jobs deferred to it, a shared store has more to hand out): the workers
        must not end before :meth:`settled`."""
        self._expected += 1

    def settled(self, count: int = 1) -> None:
        """``count`` expectations are met (their new jobs added or deferred)."""
        self._expected -= count
        self._wake_if_finished()

    @property
    def free(self) -> int:
        """How many more jobs may be held."""
        return max(0, self._capacity - self._load())

    @property
    def room(self) -> bool:
        """Whether fewer than ``capacity`` jobs are held (see :meth:`_load`)."""
        return self._load() < self._capacity

    @property
    def paused(self) -> bool:
        return self._ring.paused

    def pause(self) -> None:
        """Hand out no job until :meth:`resume`; jobs in flight finish, retries and paces
        keep their times, and a job handed out already runs."""
        self._ring.paused = True

    def resume(self) -> None:
        """Hand out jobs again (the ones due while paused go first, host by host)."""
        self._ring.paused = False
        self._dispatch()

    def stop(self) -> None:
        """Hand out no more jobs; jobs already in flight still finish."""
        self._stopped = True
        self._timers.clear()
        self._retries = 0
        self._ring.clear()
        self._held = self._ring.in_flight  # only the jobs in flight are still to finish
        self._ring.aside = 0
        for host in self._hosts.values():
            host.queue.clear()
            if host.health is not None:
                host.health.drop()
            host.ready = host.sleeping = False
        self._room.set()
        self._ring.wake_all()

    # -- working -----------------------------------------------------------------------------

    def wait_job(self) -> Coroutine[Any, Any, Job | None]:
        """The next job to run, or ``None`` when there is no more work (awaited: the
        ring's own wait, with no coroutine of the scheduler's around it per job)."""
        if self._stopped:
            return _no_job()
        return self._ring.wait_job(self._finished)

    def release(self, job: Job, result: Finished | None = None) -> None:
        """The attempt running ``job`` has ended (``result`` is ``None`` when it did not
        run to an outcome): free its host slot and learn from the outcome."""
        self._ring.in_flight -= 1
        host = self._hosts[job.host]
        host.in_flight -= 1
        self._ring.unsent(host, job)  # ended before it was sent
        if result is not None:
            host.done += 1
            error = result.error
            if error is not None:
                host.last_error = error
            if host.health is not None or (
                error is not None and error.kind in UNREACHABLE and self._health
            ):
                self._ring.learn(host, job, result)
            if host.control.observe(result, job.started, self._now()):
                self._notable.add(host.name)
        elif host.health is not None:
            self._ring.forget(host, job)
        if host.queue:
            self._consider(host)
        elif host.in_flight == 0:
            self._queues.rest(host, self._now())

    def retry_later(self, job: Job, delay_s: float) -> bool:
        """Queue ``job`` again once ``delay_s`` has passed (it stays held).

        Once stopped, or once its host is dropped, the job is let go instead (it stays
        pending in the journal), as though it had its final result: False.
        """
        if self._stopped or (self._dropped and job.host in self._dropped):
            self.finish(job)  # its room is free, and the workers may be done
            return False
        self._retries += 1
        self._timers.push(self._now() + delay_s, job)
        return True

    def finish(self, job: Job) -> None:
        """``job`` has its final result."""
        self._held -= 1
        if self._held < self._capacity or self._load() < self._capacity:
            self._room.set()
        self._wake_if_finished()

    # -- inside ------------------------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def _load(self) -> int:
        """The jobs held that count against the capacity: those waiting aside for a parked
        endpoint count only past a capacity's worth of them."""
        return self._held - min(self._ring.aside, self._capacity)

    def _check_room(self) -> None:
        if self._held - min(self._ring.aside, self._capacity) < self._capacity:  # _load()
            self._room.set()
        else:
            self._room.clear()

    def _enqueue(self, job: Job) -> None:
        host = self._queues.get(job.host)
        host.queue.append(job)
        self._consider(host)

    def _finished(self) -> bool:
        return (self._closed and self._held == 0 and self._expected == 0) or self._stopped

    def _wake_if_finished(self) -> None:
        if self._finished():
            self._ring.wake_all()

    def _due(self, item: Job | HostQueue | Endpoint) -> None:
        """A timer is due: a job's retry, a parked endpoint's probe, a host's next start."""
        if isinstance(item, Job):
            self._retries -= 1
            self._enqueue(item)
        elif isinstance(item, Endpoint):
            self._ring.wake(item)
        else:
            item.sleeping = False
            if item.name in self._hosts:
                self._consider(item)
                if not item.queue and not item.in_flight:
                    self._queues.rest(item, self._now())


async def _no_job() -> None:
    """What a stopped scheduler's :meth:`Scheduler.wait_job` gives: no job."""
    return None
