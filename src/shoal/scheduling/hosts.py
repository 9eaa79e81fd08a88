"""Per-host politeness: the state that paces a host, and what a snapshot shows of it
(the settings a host gets are in :mod:`shoal.scheduling.rules`).

:class:`HostControl` holds what one host has earned: when its next request may start
(a generic cell rate algorithm for ``per_second``, plus the least delay with jitter, both
counted from the moment a request is sent: see :meth:`HostControl.started`; a request
sent a little late keeps the rate's schedule, see :meth:`HostControl.sent`), a
pause from ``Retry-After``, and the adaptive window and delay. It reads a clock value it is
given and never sleeps, so the scheduler can keep one timer for every waiting host.

Caps and pacing belong to the host *name*: every port and scheme of a host shares them.
Connection health (parking an endpoint that keeps refusing, probing it, giving it up) belongs
to the endpoint a connection goes to: see :mod:`shoal.scheduling.endpoints`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from shoal.config import Politeness
from shoal.outcome import Finished
from shoal.result import ErrorKind, Result
from shoal.scheduling.endpoints import UNREACHABLE
from shoal.scheduling.retry import parse_retry_after
from shoal.scheduling.rules import HostRule

#: Statuses that ask the client to slow down.
SLOW_DOWN = frozenset({429, 503})

#: Adaptive delay bounds: the first step, and the ceiling.
_ADAPTIVE_STEP_S = 0.05
_ADAPTIVE_MAX_S = 60.0
#: A time to first byte this many times the host's usual one (and this much longer) is a
#: sign of load.
_SLOW_FACTOR = 3.0
_SLOW_MARGIN_S = 0.25
#: A paced request sent at most this late (and at most one interval late) keeps its
#: host's schedule: the lateness of a timer, of a busy loop or of the write itself is made
#: up by the next request instead of lowering the rate. Later than that, the host was idle
#: (or the send was slow) and its schedule starts again from the send.
LATE_CARRY_MAX_S = 0.005


@dataclass(frozen=True, slots=True)
class HostState:
    """What :meth:`shoal.Engine.statistics` shows of one host.

    ``state`` is ``parked`` (an endpoint of the host is unreachable, waiting to probe),
    ``probing``, ``dead`` (an endpoint given up), ``paused`` (a Retry-After), ``slowed``
    (the adaptive throttle is below the host's settings) or ``ok``. The first three are an
    endpoint's, named by ``endpoint`` (``scheme://host:port``): the host's other endpoints
    go on meanwhile. ``cap`` is its in-flight cap now, ``delay_s`` the least time between
    starts now, ``wait_s`` how long until it may start again (or the endpoint may be
    probed). ``failures`` counts the consecutive connection failures of the endpoint with
    the most. ``done`` counts the attempts that ended since the scheduler last took the
    host up (a dashboard turns two snapshots into a rate), ``last_error`` is the last failed
    attempt's ``kind: message``.
    """

    host: str
    state: str
    in_flight: int
    queued: int
    cap: int
    delay_s: float
    wait_s: float
    failures: int
    done: int = 0
    last_error: str | None = None
    endpoint: str | None = None


class HostControl:
    """The pacing of one host (see the module's docstring).

    ``cap`` (requests in flight allowed now) and ``tracks`` (whether starts must be
    recorded and ``ready_at`` asked) are plain attributes, kept up to date by every change,
    so the scheduler's common path reads two attributes and nothing more.
    """

    __slots__ = (
        "_adaptive",
        "_baseline_s",
        "_decreased_at",
        "_delay",
        "_earliest",
        "_interval",
        "_jitter",
        "_late_carry_s",
        "_retry_after_max_s",
        "_share",
        "_tat",
        "_tolerance",
        "cap",
        "extra_delay_s",
        "limit",
        "name",
        "paused_until",
        "tracks",
        "unsent",
        "unverified",
        "unwell",
        "window",
    )

    def __init__(
        self,
        rule: HostRule,
        politeness: Politeness,
        *,
        name: str = "",
        share: float = 1.0,
        retry_after_max_s: float = math.inf,
    ) -> None:
        self.name = name
        # A shard serving part of a host gets the same part of its rate.
        limit = rule.max_in_flight
        self.limit = max(1, limit)
        rate = None if rule.per_second is None else rule.per_second * share
        self._interval = 0.0 if rate is None else 1.0 / rate
        self._tolerance = self._interval * (max(1, round(rule.burst * share)) - 1)
        self._late_carry_s = min(self._interval, LATE_CARRY_MAX_S)
        self._share = share if share > 0 else 1.0
        self._delay = rule.delay_s / self._share
        self._jitter = rule.jitter
        self._tat = -math.inf
        self._earliest = -math.inf
        self._adaptive = politeness.adaptive
        self._retry_after_max_s = retry_after_max_s
        self.window = float(self.limit)
        self.extra_delay_s = 0.0
        self._decreased_at = -math.inf
        self._baseline_s = math.inf
        self.paused_until = -math.inf
        #: Until robots.txt is read, one request at a time (the one reading it).
        self.unverified = politeness.respect_robots
        #: An endpoint of the host is parked or probed: the scheduler asks before each start.
        self.unwell = False
        #: Requests started and not yet on the wire (only counted while paced).
        self.unsent = 0
        self.cap = self.limit
        self.tracks = False
        self._settle()

    def _settle(self) -> None:
        """Recompute ``cap`` and ``tracks`` after a change."""
        if self.unverified:
            self.cap = 1
        else:
            self.cap = int(self.window) if self._adaptive else self.limit
        self.tracks = (
            self.unwell
            or self._adaptive
            or self._interval > 0
            or self._delay > 0
            or self.extra_delay_s > 0
            or self.paused_until > -math.inf
        )

    # -- what the scheduler asks -----------------------------------------------------------

    @property
    def paced(self) -> bool:
        """Whether a rate or a delay spaces the host's starts now."""
        return self._interval > 0 or self._delay > 0 or self.extra_delay_s > 0

    def ready_at(self) -> float:
        """The loop time from which the next request may start: ``inf`` while a paced
        host's last request waits to be sent (it is due once that one is)."""
        if self.unsent:
            return math.inf
        return max(self._tat - self._tolerance, self._earliest, self.paused_until)

    def started(self, now: float) -> bool:
        """A request to the host starts now (asked only while ``tracks``).

        True when the host is paced: its pace then counts from the moment the request is
        sent, which the caller reports with :meth:`sent` (or when the attempt ends, if it
        never got that far), and no other request starts before. The time a request takes
        to be sent (a DNS lookup, a connection, a TLS handshake) thus never shortens the
        gap the server sees.
        """
        if self.paused_until > -math.inf and now >= self.paused_until:
            self.paused_until = -math.inf  # the pause is over
            self._settle()
        if self._interval > 0 or self._delay > 0 or self.extra_delay_s > 0:
            self.unsent += 1
            return True
        return False

    def sent(self, now: float, rng: random.Random) -> None:
        """A request :meth:`started` while paced is on the wire now (or ended before, its
        connection failing, say: a connection attempt is traffic too): the next is due
        from here.

        The rate's next due time follows its schedule (one interval after the last) when
        this request went out no more than a small bound late (``LATE_CARRY_MAX_S``, at
        most one interval): a loop timer fires up to a millisecond late, and a request
        takes a moment to be written, so counting each interval from the send alone would
        lose that moment every time and undershoot the rate (by about a tenth at 200/s).
        Sent later than the bound, the host had nothing to send (or a slow connection):
        the schedule starts again from the send, so an idle spell earns no more than the
        burst. Over any stretch of time *W* a host is thus sent at most
        ``burst + (W + carry) * rate`` requests.
        """
        self.unsent -= 1
        if self._interval > 0:
            on_time = now - self._tat <= self._late_carry_s
            self._tat = (self._tat if on_time else now) + self._interval
        delay = self._delay + self.extra_delay_s
        if delay > 0:
            self._earliest = now + delay * (1.0 + self._jitter * rng.random())

    def watch(self, unwell: bool) -> None:
        """Whether an endpoint of the host is parked or probed now (so that every start is
        asked about: see :meth:`shoal.scheduling.endpoints.Health.take`)."""
        self.unwell = unwell
        self._settle()

    def verify(self) -> None:
        """The host's robots.txt is read: the one-at-a-time limit ends."""
        self.unverified = False
        self._settle()

    def keep_apart(self, delay_s: float, now: float) -> None:
        """Start requests at least ``delay_s`` apart from ``now`` on (a Crawl-delay)."""
        self._delay = max(self._delay, delay_s / self._share)
        self._earliest = max(self._earliest, now + self._delay)
        self._settle()

    def carried(self, now: float) -> tuple[float, float, float]:
        """What moves with the host to its next owner (a shared job's host lease): seconds
        until its next start, until its Retry-After pause ends, and its Crawl-delay."""
        ready_at = max(self._tat - self._tolerance, self._earliest)
        return (
            max(0.0, ready_at - now) if ready_at < math.inf else 0.0,
            max(0.0, self.paused_until - now),
            self._delay * self._share,
        )

    def carry_over(
        self, now: float, ready_in_s: float, paused_for_s: float, delay_s: float
    ) -> None:
        """Take on what the host's last owner :meth:`carried`."""
        if delay_s > 0:
            self._delay = max(self._delay, delay_s / self._share)
        if ready_in_s > 0:
            self._earliest = max(self._earliest, now + ready_in_s)
        if paused_for_s > 0:
            self.paused_until = max(self.paused_until, now + paused_for_s)
        self._settle()

    def is_plain(self, now: float) -> bool:
        """True when forgetting this state would change nothing."""
        return (
            self.ready_at() <= now
            and not self.unwell
            and self.window >= self.limit
            and self.extra_delay_s == 0
        )

    # -- what the outcomes teach -----------------------------------------------------------

    def observe(self, result: Finished, started: float, now: float) -> bool:
        """Learn from the outcome of an attempt that started at loop time ``started``.

        True when the host is now in a state worth showing (not ``ok``).
        """
        error = result.error
        response = result if isinstance(result, Result) else None  # (a call has no status)
        status = None if response is None else response.status
        if error is None and not self.tracks and status not in SLOW_DOWN:
            return False  # the common case: a plain host, a plain answer
        if error is None or error.kind not in UNREACHABLE:  # (those teach its endpoint)
            if status in SLOW_DOWN and response is not None and response.headers is not None:
                after = parse_retry_after(response.headers.get("Retry-After"))
                if after is not None:
                    pause = min(after, self._retry_after_max_s)
                    self.paused_until = max(self.paused_until, now + pause)
            if self._adaptive:
                self._adapt(result, started, now)
        self._settle()
        return self.state(now) != "ok"

    def _adapt(self, result: Finished, started: float, now: float) -> None:
        error = result.error
        response = result if isinstance(result, Result) else None
        ttfb_ms = None if response is None else response.ttfb_ms
        status = None if response is None else response.status
        ttfb = None if ttfb_ms is None else ttfb_ms / 1000
        slow = False
        if ttfb is not None and error is None:
            baseline = self._baseline_s
            slow = ttfb > _SLOW_FACTOR * baseline and ttfb - baseline > _SLOW_MARGIN_S
            if ttfb < baseline:
                self._baseline_s = ttfb
            else:
                self._baseline_s = baseline + (ttfb - baseline) / 64
        congested = (
            slow or status in SLOW_DOWN or (error is not None and error.kind is ErrorKind.TIMEOUT)
        )
        if congested:
            if started < self._decreased_at:
                return  # sent before the last slow-down: it says nothing new
            self._decreased_at = now
            if self.window > 1:
                self.window = max(1.0, self.window / 2)
            else:
                self.extra_delay_s = min(
                    _ADAPTIVE_MAX_S, max(_ADAPTIVE_STEP_S, self.extra_delay_s * 2)
                )
        elif error is None and status is not None and status < 500:
            if self.extra_delay_s > 0:
                self.extra_delay_s *= 0.9
                if self.extra_delay_s < _ADAPTIVE_STEP_S:
                    self.extra_delay_s = 0.0
            elif self.window < self.limit:
                self.window = min(float(self.limit), self.window + 1 / self.window)

    def state(self, now: float) -> str:
        if self.paused_until > now:
            return "paused"
        if self.window < self.limit or self.extra_delay_s > 0:
            return "slowed"
        return "ok"

    def delay_now(self) -> float:
        return max(self._interval, self._delay + self.extra_delay_s)
