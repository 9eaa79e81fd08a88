"""The scheduler's hosts: one queue per host, with its control and its connection health.

:class:`HostQueues` makes a host's queue when its first job comes (with the host's caps:
its rule, and a shard's part of it), forgets it once it is idle and plain, keeps the state
of idle hosts whose state still matters (a pace, a pause, a throttle: at most 65,536 of
them), and says what a snapshot shows of the hosts.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Callable

from shoal.job import Job
from shoal.result import Error
from shoal.scheduling.endpoints import Health
from shoal.scheduling.hosts import HostControl, HostState
from shoal.scheduling.rules import HostRules

#: A shard's part of a host's in-flight cap, from its name, its own cap and whether it is
#: paced (see :meth:`shoal.scheduling.shards.Shard.host_cap`).
HostCap = Callable[[str, int, bool], int]

#: Idle hosts whose state is worth keeping (a pace, a pause, a throttle), at most.
_IDLE_HOSTS = 65_536
#: Hosts shown in a statistics snapshot, at most.
_SHOWN_HOSTS = 50


class HostQueue:
    """One host's queued jobs, the jobs it has in flight, and its state."""

    __slots__ = (
        "control",
        "done",
        "health",
        "in_flight",
        "last_error",
        "name",
        "queue",
        "ready",
        "saturates",
        "sleeping",
    )

    def __init__(self, name: str, control: HostControl, saturates: bool) -> None:
        self.name = name
        self.control = control
        #: It may keep every worker busy alone (unpaced, its cap at least the concurrency):
        #: its backlog may wait in memory, up to the capacity, instead of in the store.
        self.saturates = saturates
        self.queue: deque[Job] = deque()
        self.in_flight = 0
        #: Attempts ended, and the last one's error (for the dashboard).
        self.done = 0
        self.last_error: Error | None = None
        #: Its endpoints whose connections failed lately (``None``: none).
        self.health: Health | None = None
        self.ready = False  # in the ring
        self.sleeping = False  # in the timer heap


class HostQueues:
    """The hosts the scheduler holds, by name (``hosts``), and those worth showing
    (``notable``: paused, parked, throttled or given up)."""

    def __init__(
        self,
        rules: HostRules,
        *,
        host_cap: HostCap | None,
        concurrency: int | None,
        retry_after_max_s: float,
    ) -> None:
        self._rules = rules
        self.politeness = rules.politeness
        self._host_cap = host_cap
        self._concurrency = concurrency
        self._retry_after_max_s = retry_after_max_s
        self.hosts: dict[str, HostQueue] = {}
        self.notable: set[str] = set()
        self._idle: OrderedDict[str, None] = OrderedDict()

    def get(self, name: str) -> HostQueue:
        """Host ``name``'s queue, made now if it has none."""
        host = self.hosts.get(name)
        if host is None:
            rule = self._rules.for_host(name)
            limit = rule.max_in_flight
            share = 1.0
            if self._host_cap is not None:
                part = max(1, self._host_cap(name, limit, rule.paced))
                share, limit = part / max(1, rule.max_in_flight), part
                rule = dataclasses.replace(rule, max_in_flight=limit)
            control = HostControl(
                rule,
                self.politeness,
                name=name,
                share=share,
                retry_after_max_s=self._retry_after_max_s,
            )
            workers = self._concurrency
            saturates = (
                workers is not None
                and limit >= workers
                and not rule.paced
                and not self.politeness.adaptive
            )
            host = self.hosts[name] = HostQueue(name, control, saturates)
        elif self._idle:
            self._idle.pop(name, None)
        return host

    def rest(self, host: HostQueue, now: float) -> None:
        """``host`` has nothing queued or in flight: forget it, unless its state matters."""
        if host.sleeping or host.ready:
            return
        if host.health is None and host.control.is_plain(now):
            del self.hosts[host.name]
            self.notable.discard(host.name)
            return
        self._idle[host.name] = None
        if len(self._idle) > _IDLE_HOSTS:
            name, _ = self._idle.popitem(last=False)
            stale = self.hosts.get(name)
            if (
                stale is not None
                and not stale.queue
                and not stale.in_flight
                and (stale.health is None or not stale.health.aside)
            ):
                del self.hosts[name]
                self.notable.discard(name)

    def states(self, now: float) -> tuple[HostState, ...]:
        """The hosts that are paused, parked, throttled or given up (at most 50)."""
        shown: list[HostState] = []
        for name in list(self.notable):
            host = self.hosts.get(name)
            state = None if host is None else _state_of(host, now)
            if state is None or state.state == "ok":
                self.notable.discard(name)
                continue
            if len(shown) < _SHOWN_HOSTS:
                shown.append(state)
        return tuple(sorted(shown, key=lambda state: state.host))

    def busiest(self, limit: int, now: float) -> tuple[HostState, ...]:
        """The ``limit`` hosts with the most requests in flight and queued, busiest first
        (a walk over every host: for a dashboard, not a hot path)."""
        top = heapq.nlargest(
            limit,
            (host for host in self.hosts.values() if host.in_flight or host.queue),
            key=lambda host: (host.in_flight, len(host.queue)),
        )
        return tuple(_state_of(host, now) for host in top)


def _wait(due: float, now: float) -> float:
    """Seconds until ``due`` for a snapshot (0 while a request is still to be sent)."""
    return 0.0 if due == math.inf else round(max(0.0, due - now), 3)


def _state_of(host: HostQueue, now: float) -> HostState:
    """What a snapshot shows of ``host``: an unhealthy endpoint's state (parked, probing,
    dead, naming the endpoint) before the host's own (paused, slowed, ok)."""
    control = host.control
    state = control.state(now)
    due = control.ready_at()
    failures = 0
    shown = None
    queued = len(host.queue)
    worst = None if host.health is None else host.health.worst(now)
    if worst is not None:
        failures = worst.failures
        queued += len(worst.aside)
        worse = worst.state(now)
        if worse != "ok":
            state, shown = worse, worst.name
            if worse != "dead":
                due = max(due, worst.parked_until)
    return HostState(
        host=host.name,
        state=state,
        in_flight=host.in_flight,
        queued=queued,
        cap=control.cap,
        delay_s=round(control.delay_now(), 3),
        wait_s=_wait(due, now),
        failures=failures,
        done=host.done,
        last_error=None if (e := host.last_error) is None else f"{e.kind.value}: {e.message}",
        endpoint=shown,
    )
