"""The deadlines of the attempts in flight, kept by one watchdog instead of timers per request.

aiohttp arms timers for every request: a total deadline, a connect deadline, and a
between-reads timer that it cancels and arms again on every chunk the socket delivers. At
thousands of requests a second those timers cost more than shoal's own bookkeeping, and
they cost more the slower the servers are. shoal therefore hands aiohttp no timeouts at all
and keeps the three deadlines itself:

* each attempt is an :class:`Attempt` with its due times, registered with the engine's
  :class:`Watchdog` for as long as it runs;
* the transport's connection (a :class:`Connection`; aiohttp's is
  :class:`shoal.fetching.aiohttp_transport.WatchedProtocol`) learns which attempt it serves
  when it is prepared for a request (in the attempt's own task, where :data:`current` names
  the attempt); where aiohttp would arm or re-arm its between-reads timer (the request
  sent, each read, reading resumed) it notes the loop time instead, and where aiohttp would
  disarm it (the body complete, reading paused) it says the attempt is not waiting on the
  server;
* one loop timer wakes the watchdog every ``tick_s`` to look at the attempts in flight;
* a tick that comes more than a tick late means the loop was stalled (a long callback, a
  busy machine): that time is not counted against the connect and between-reads
  deadlines (see :meth:`Watchdog.stalled`), so a stall of shoal's own never passes for a
  silent server.

An attempt that is not connected by its connect deadline, or whose whole run passes its
total deadline, is cancelled, and the fetcher turns that cancellation into a ``timeout``
error. One whose server stays silent for ``read_s`` gets the same exception aiohttp raises
for its own between-reads timeout, through the protocol, so the request ends as it did
before. A deadline fires at most one tick late; ticks are a small fraction of the shortest
timeout.

A connection only answers for the attempt it was last prepared for, and only once it is
the attempt's own: a proxy's CONNECT exchange (prepared without a read timeout) leaves the
connect deadline running until the tunnel is up, and an idle connection of an earlier
redirect hop closing later does not disarm the next hop's deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, Protocol

from shoal.config import Timeouts

#: Ticks per shortest timeout: a deadline fires at most this fraction of it late.
_TICKS_PER_TIMEOUT = 16
_MIN_TICK_S = 0.005
_MAX_TICK_S = 0.5

#: What ended an attempt early.
CONNECT, TOTAL, READ = "connect", "total", "read"


class Attempt:
    """One attempt's deadlines (loop times) and what the watchdog knows of its progress."""

    __slots__ = (
        "cancelling",
        "connect_due",
        "expired",
        "last_read",
        "on_sent",
        "peer",
        "protocol",
        "read_s",
        "reading",
        "task",
        "total_due",
    )

    def __init__(self, task: asyncio.Task[Any], now: float, timeouts: Timeouts) -> None:
        self.task = task
        #: The task's count of pending cancellations when the attempt began: a cancellation
        #: from elsewhere is told apart from the watchdog's by it.
        self.cancelling = task.cancelling()
        self.total_due = now + timeouts.total_s
        self.connect_due = now + timeouts.connect_s
        self.read_s = timeouts.read_s
        #: The connection serving the attempt (``None`` until it is connected).
        self.protocol: Connection | None = None
        #: The address the latest request of the attempt was sent to (``host:port``).
        self.peer: str | None = None
        #: Called once, when the connection is handed to the request (which aiohttp then
        #: writes at once): the moment the request is sent.
        self.on_sent: Callable[[], None] | None = None
        #: Whether it waits on the server (between-reads deadline armed), and since when.
        self.reading = False
        self.last_read = now
        #: ``CONNECT`` or ``TOTAL`` once that deadline passed (the attempt is cancelled). A
        #: passed between-reads deadline fails the read it waits for and is not kept here:
        #: the attempt may go on (an archived redirect's body is read past such a stall),
        #: with its connect and total deadlines still watched.
        self.expired: str | None = None

    def touch(self, now: float) -> None:
        """Count progress made on the client's side (a slow write of a saved body, say),
        so a read paused for it is not taken for a silent server."""
        self.last_read = now

    def due(self, now: float) -> str | None:
        """Which deadline has passed at ``now``, if any."""
        if now >= self.total_due:
            return TOTAL
        if self.protocol is None:
            return CONNECT if now >= self.connect_due else None
        if self.reading and now - self.last_read >= self.read_s:
            return READ
        return None

    def timed_out(self) -> bool:
        """Whether a cancellation the attempt's task received came from the watchdog
        alone (then it is withdrawn, and the attempt ends with a timeout)."""
        if self.expired not in (CONNECT, TOTAL):
            return False
        return self.task.uncancel() <= self.cancelling


class Connection(Protocol):
    """What the watchdog asks of the connection serving an attempt (the transport's)."""

    def serves(self, attempt: Attempt) -> bool:
        """Whether the connection still serves ``attempt``."""
        ...

    def read_timed_out(self) -> None:
        """Fail the read waiting on the connection, as the between-reads timeout."""
        ...


#: The attempt running in this task, read by the transport's connection when it is
#: prepared for a request.
current: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "shoal_attempt", default=None
)


def tick_for(timeouts: list[Timeouts]) -> float:
    """How often the watchdog looks, for the shortest of these timeouts."""
    shortest = min(min(t.total_s, t.connect_s, t.read_s) for t in timeouts)
    return min(_MAX_TICK_S, max(_MIN_TICK_S, shortest / _TICKS_PER_TIMEOUT))


class Watchdog:
    """Ends the attempts whose deadlines pass; wakes every ``tick_s`` while any runs."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._attempts: set[Attempt] = set()
        self._timer: asyncio.TimerHandle | None = None
        #: The loop time the armed tick is due.
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, timeouts: Timeouts) -> Attempt:
        """Register a new attempt of the current task (call :meth:`end` when it ends)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        attempt = Attempt(task, loop.time(), timeouts)
        self._attempts.add(attempt)
        if self._timer is None:
            self._arm(loop, loop.time())
        return attempt

    def end(self, attempt: Attempt) -> None:
        self._attempts.discard(attempt)
        attempt.protocol = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._attempts.clear()

    def check(self, now: float) -> list[Attempt]:
        """End the attempts whose deadlines have passed at ``now``; return them."""
        ended = []
        reads = []
        for attempt in self._attempts:
            if attempt.expired is not None:
                continue
            reason = attempt.due(now)
            if reason is None:
                continue
            if reason == READ:
                attempt.reading = False  # fired once; the attempt keeps its other deadlines
                reads.append(attempt)
            else:
                attempt.expired = reason
            ended.append(attempt)
        for attempt in ended:
            if attempt.expired is not None:
                attempt.task.cancel()
        for attempt in reads:
            protocol = attempt.protocol
            if protocol is not None and protocol.serves(attempt):
                protocol.read_timed_out()
        return ended

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        self._timer = None
        now = loop.time()
        late = now - self._due
        try:
            if late > self.tick_s:
                self.stalled(late, now)
            self.check(now)
        finally:  # a fault in one check must not switch every deadline off
            if self._attempts:
                self._arm(loop, now)

    def _arm(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + self.tick_s
        self._timer = loop.call_at(self._due, self._tick)

    def stalled(self, late: float, now: float) -> None:
        """The loop ran nothing for about ``late`` seconds (the tick came that late): a
        connection or an answer that arrived meanwhile may not be read yet (uvloop runs
        timers before it polls the sockets), so that time is not held against the connect
        and between-reads deadlines. The total deadline stays: it bounds every attempt."""
        for attempt in self._attempts:
            attempt.connect_due += late
            attempt.last_read = min(now, attempt.last_read + late)
