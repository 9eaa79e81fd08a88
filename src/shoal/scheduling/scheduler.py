"""The scheduler: holds admitted jobs and hands them to workers, one host slot at a time.

Jobs wait in one queue per host. Hosts with queued work and a free slot form a ring, and a
worker takes the next job from the host at the front, which then goes to the back: so a host
with a million queued jobs gets the same turns as a host with one. A job waiting to be
retried sits in a heap until it is due. The scheduler never does I/O; it decides *when*.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable

from shoal.job import Job


class _Host:
    __slots__ = ("cap", "in_flight", "name", "queue", "ready")

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = cap
        self.queue: deque[Job] = deque()
        self.in_flight = 0
        self.ready = False


class Scheduler:
    """Per-host in-flight caps and fair, round-robin dispatch over hosts.

    ``host_cap`` gives a host's cap when it differs by host (a shard's part of the cap);
    by default every host gets ``per_host``. ``capacity`` bounds the jobs held (queued,
    waiting to retry, or in flight); the feeder waits for room with :meth:`wait_room`, so
    memory stays bounded whatever the input size.
    """

    def __init__(
        self, *, per_host: int, capacity: int, host_cap: Callable[[str], int] | None = None
    ) -> None:
        self._host_cap = host_cap or (lambda _host: per_host)
        self._capacity = capacity
        self._hosts: dict[str, _Host] = {}
        self._ready: deque[_Host] = deque()
        self._waiters: deque[asyncio.Future[Job | None]] = deque()
        self._delayed: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._held = 0
        self.in_flight = 0
        self._closed = False
        self._stopped = False

    # -- what the engine reads ---------------------------------------------------------------

    @property
    def held(self) -> int:
        """Jobs admitted and not yet final."""
        return self._held

    @property
    def waiting_retry(self) -> int:
        return len(self._delayed)

    @property
    def stopped(self) -> bool:
        return self._stopped

    # -- feeding -----------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        """Take a new job (the caller waited for room); ignored once stopped."""
        if self._stopped:
            return
        self._held += 1
        if self._held >= self._capacity:
            self._room.clear()
        self._enqueue(job)

    async def wait_room(self) -> None:
        """Wait until fewer than ``capacity`` jobs are held."""
        await self._room.wait()

    def close(self) -> None:
        """No more jobs will be added: workers end once the held jobs are final."""
        self._closed = True
        self._wake_if_finished()

    def stop(self) -> None:
        """Hand out no more jobs; jobs already in flight still finish."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._delayed.clear()
        self._ready.clear()
        self._held = self.in_flight  # only the jobs in flight are still to finish
        self._hosts = {name: host for name, host in self._hosts.items() if host.in_flight}
        for host in self._hosts.values():
            host.queue.clear()
            host.ready = False
        self._room.set()
        self._wake_all()

    # -- working -----------------------------------------------------------------------------

    async def wait_job(self) -> Job | None:
        """The next job to run, or ``None`` when there is no more work."""
        if self._stopped:
            return None
        if self._ready and not self._waiters:
            return self._take()
        if self._closed and self._held == 0:
            return None
        waiter: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                job = waiter.result()
                if job is not None:  # handed over just as we were cancelled: give it back
                    self._give_back(job)
            raise

    def release(self, job: Job) -> None:
        """The attempt running ``job`` has ended: free its host slot."""
        self.in_flight -= 1
        host = self._hosts[job.host]
        host.in_flight -= 1
        if host.queue:
            if not host.ready:
                host.ready = True
                self._ready.append(host)
                self._dispatch()
        elif host.in_flight == 0:
            del self._hosts[job.host]

    def retry_later(self, job: Job, delay_s: float) -> bool:
        """Queue ``job`` again once ``delay_s`` has passed (it stays held).

        Once stopped, the job is let go instead (it stays pending in the journal).
        """
        if self._stopped:
            self._held -= 1
            return False
        loop = asyncio.get_running_loop()
        due = loop.time() + delay_s
        heapq.heappush(self._delayed, (due, next(self._order), job))
        if self._delayed[0][2] is job:
            self._arm_timer(loop)
        return True

    def finish(self, job: Job) -> None:
        """``job`` has its final result."""
        self._held -= 1
        if self._held < self._capacity:
            self._room.set()
        self._wake_if_finished()

    # -- inside ------------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        host = self._hosts.get(job.host)
        if host is None:
            host = self._hosts[job.host] = _Host(job.host, max(1, self._host_cap(job.host)))
        host.queue.append(job)
        if not host.ready and host.in_flight < host.cap:
            host.ready = True
            self._ready.append(host)
            self._dispatch()

    def _take(self) -> Job:
        host = self._ready.popleft()
        job = host.queue.popleft()
        host.in_flight += 1
        self.in_flight += 1
        if host.queue and host.in_flight < host.cap:
            self._ready.append(host)
        else:
            host.ready = False
        return job

    def _give_back(self, job: Job) -> None:
        self.in_flight -= 1
        host = self._hosts[job.host]
        host.in_flight -= 1
        host.queue.appendleft(job)
        if not host.ready:
            host.ready = True
            self._ready.appendleft(host)
        self._dispatch()

    def _dispatch(self) -> None:
        waiters = self._waiters
        while waiters and self._ready:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._take())

    def _wake_if_finished(self) -> None:
        if self._closed and self._held == 0:
            self._wake_all()

    def _wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _arm_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(self._delayed[0][0], self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, job = heapq.heappop(self._delayed)
            self._enqueue(job)
        if self._delayed:
            self._arm_timer(loop)
