"""The ring of ready hosts: the hosts with queued work, a free slot and nothing to wait
for, and the workers waiting for a job.

A worker takes the next job from the host at the front of the ring, which then goes to the
back: so a host with a million queued jobs gets the same turns as a host with one. A host
that must wait goes on the scheduler's timers (:mod:`.timers`) instead, and comes back once
it is due. A host with an unhealthy endpoint (:mod:`.endpoints`) is asked before each job it
starts: a job for a parked endpoint waits aside on it while the host's other jobs go on.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable

from shoal.job import Job
from shoal.outcome import Finished
from shoal.scheduling.endpoints import Endpoint, Health
from shoal.scheduling.queues import HostQueue, HostQueues
from shoal.scheduling.timers import RESOLUTION_S, Timers

#: Jobs queued in memory for one host, at most; its further jobs are deferred to the store
#: and taken back as its queue drains (to :data:`LOW_QUEUE` or fewer).
HOST_QUEUE = 512
LOW_QUEUE = HOST_QUEUE // 2

#: Told the name of a host whose queue is down to :data:`LOW_QUEUE` jobs or fewer.
QueueListener = Callable[[str], None]


class Ring:
    """The ring of ready hosts among ``queues``, and the workers waiting for a job. The
    jobs of a parked endpoint wait aside on it (``aside`` of them, told to
    ``room_changed``: they leave the scheduler's room to the rest); ``rng`` jitters a
    paced host's delay."""

    def __init__(
        self,
        queues: HostQueues,
        timers: Timers[Job | HostQueue | Endpoint],
        room_changed: Callable[[], None],
        rng: random.Random,
    ) -> None:
        self._hosts = queues.hosts
        self._notable = queues.notable
        self._politeness = queues.politeness
        self._timers = timers
        self._room_changed = room_changed
        self._rng = rng
        self._on_sent = self._sent
        self._ready: deque[HostQueue] = deque()
        self._waiters: deque[asyncio.Future[Job | None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Jobs handed out and not yet released.
        self.in_flight = 0
        #: Jobs waiting aside for a parked endpoint.
        self.aside = 0
        self.paused = False
        #: Told when a host's queue runs low (the work source, while it defers jobs).
        self.listener: QueueListener | None = None

    async def wait_job(self, finished: Callable[[], bool]) -> Job | None:
        """The next job to run, or ``None`` once ``finished()`` (asked now, and told by
        :meth:`wake_all`)."""
        if self._ready and not self._waiters and not self.paused:
            job = self.take()
            if job is not None:
                return job
        if finished():
            return None
        waiter: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                job = waiter.result()
                if job is not None:  # handed over just as we were cancelled: give it back
                    self.give_back(job)
            raise

    def clear(self) -> None:
        """Forget every ready host (the scheduler stops)."""
        self._ready.clear()

    def _now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def consider(self, host: HostQueue) -> None:
        """Put ``host`` in the ring, or on a timer, if it has work it may start."""
        if host.ready or host.sleeping or not host.queue:
            return
        control = host.control
        if host.in_flight >= control.cap:
            return
        if control.tracks:
            due = control.ready_at()
            if due == math.inf:
                return  # its last request is still to be sent: that wakes it
            if due > self._now() + RESOLUTION_S:
                host.sleeping = True
                self._timers.push(due, host)
                return
        host.ready = True
        self._ready.append(host)
        self.dispatch()

    def take(self) -> Job | None:
        """The next job from the ring, or ``None`` when no host in it may start now."""
        ready = self._ready
        while ready:
            host = ready.popleft()
            host.ready = False
            control = host.control
            if not host.queue or host.in_flight >= control.cap:
                continue  # its cap shrank while it waited in the ring
            if control.tracks:
                now = self._now()
                due = control.ready_at()
                if due == math.inf:
                    continue  # its last request is still to be sent: that wakes it
                if due > now + RESOLUTION_S:  # paused while it waited in the ring
                    host.sleeping = True
                    self._timers.push(due, host)
                    continue
                taken = self._next_job(host, now)
                if taken is None:  # its jobs wait for their endpoint, parked
                    if self.listener is not None and len(host.queue) <= LOW_QUEUE:
                        self.listener(host.name)
                    continue
                job = taken
                job.started = now
                if control.started(now):
                    job.on_sent = self._on_sent
            else:
                job = host.queue.popleft()
            host.in_flight += 1
            self.in_flight += 1
            if self.listener is not None and len(host.queue) <= LOW_QUEUE:
                self.listener(host.name)  # (asked without a call in the common case)
            if host.queue and host.in_flight < control.cap and not control.tracks:
                host.ready = True  # the common case, without a call
                ready.append(host)
            else:
                self.consider(host)
            return job
        return None

    def _sent(self, job: Job) -> None:
        """``job``'s request is on the wire: its paced host may be due again."""
        if job.on_sent is not None:
            host = self._hosts[job.host]
            self.unsent(host, job)
            self.consider(host)

    def unsent(self, host: HostQueue, job: Job) -> None:
        """If ``job`` still waits to be reported sent, its host's pace counts from now."""
        if job.on_sent is not None:
            job.on_sent = None
            host.control.sent(self._now(), self._rng)

    def give_back(self, job: Job) -> None:
        """``job`` was handed out but will not run now: it goes first again."""
        self.in_flight -= 1
        host = self._hosts[job.host]
        host.in_flight -= 1
        self.unsent(host, job)
        if host.health is not None:
            host.health.forget(job)  # a probe given back probes again once taken
        host.queue.appendleft(job)
        if not host.ready and not host.sleeping:
            host.ready = True
            self._ready.appendleft(host)
        self.dispatch()

    def dispatch(self) -> None:
        """Hand jobs from the ring to the workers waiting, while both last."""
        if self.paused:
            return
        waiters = self._waiters
        while waiters and self._ready:
            job = self.take()
            if job is None:
                return
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(job)
                    break
            else:
                self.give_back(job)
                return

    def wake_all(self) -> None:
        """Tell every worker waiting that there is no more work."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # -- connection health: per endpoint, asked only of a host that has an unhealthy one ---

    def learn(self, host: HostQueue, job: Job, result: Finished) -> None:
        """Learn from the outcome of ``job``'s attempt what its endpoint's health is."""
        health = host.health
        if health is None:
            health = host.health = Health(host.name, self._politeness)
        parked, back = health.learn(job, result, self._now())
        if parked is not None:
            self._timers.push(parked.parked_until, parked)
        if back:
            self._put_back(host, back)
        if health.plain():
            host.health = None
        else:
            self._notable.add(host.name)
        holding = health.holding
        if holding != host.control.unwell:
            host.control.watch(holding)

    def forget(self, host: HostQueue, job: Job) -> None:
        """``job`` ended without an outcome: if it probed an endpoint, another job probes."""
        health = host.health
        if health is not None:
            endpoint = health.forget(job)
            if endpoint is not None:
                self.wake(endpoint)

    def wake(self, endpoint: Endpoint) -> None:
        """``endpoint``'s cool-down is over: its first job waiting aside goes as the probe."""
        host = self._hosts.get(endpoint.host)
        if host is None or host.health is None:
            return
        job = host.health.wake(endpoint, self._now() + RESOLUTION_S)
        if job is not None:
            self._put_back(host, [job])
            self.consider(host)

    def _put_back(self, host: HostQueue, jobs: list[Job]) -> None:
        """``jobs`` waited aside for their endpoint: they go first in their host's queue."""
        host.queue.extendleft(reversed(jobs))
        self.aside -= len(jobs)
        self._room_changed()

    def _next_job(self, host: HostQueue, now: float) -> Job | None:
        """The first job in ``host``'s queue that may start now: those for a parked endpoint
        (or one being probed) are set aside on it (``None``: every one of them was)."""
        health = host.health
        if health is None:
            return host.queue.popleft()
        job, held = health.take(host.queue, now + RESOLUTION_S)
        if held:
            self.aside += held
            self._room_changed()
        return job
