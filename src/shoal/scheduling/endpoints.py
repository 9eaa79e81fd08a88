"""Connection health: an endpoint whose connections keep failing is parked, probed, given up.

Health belongs to what a connection goes to, an *endpoint* (:func:`shoal.result.endpoint`:
scheme, host and port; every request of a run takes the same route, through the same proxy
if there is one), not to a host name: one dead port of a host must not hold back its other
ports, whose caps and pacing (:class:`~shoal.scheduling.hosts.HostControl`) it shares.

A host's :class:`Health` keeps only the endpoints whose connections failed lately, so a healthy
host has none and the scheduler never asks. After ``dead_after`` consecutive connection
failures an endpoint is parked for ``dead_cooldown_s``: the jobs for it that the scheduler takes
from the host's queue wait aside here, and the host's other jobs go on. When the cool-down
ends one job goes back as the probe (one at a time); a probe that connects brings the rest
back, a failed one doubles the cool-down, and after ``dead_probes`` failed probes the endpoint
is given up: its jobs come back to fail without being sent (:meth:`Health.refusal`).
"""

from __future__ import annotations

import math
from collections import deque

from shoal.config import Politeness
from shoal.job import Job
from shoal.outcome import Finished
from shoal.result import Error, ErrorKind, endpoint_of

#: Outcomes that say the endpoint could not be reached at all.
UNREACHABLE = frozenset({ErrorKind.CONNECT, ErrorKind.DNS})
#: The longest a dead endpoint waits between probes.
_PARK_MAX_S = 600.0


def endpoint_of_job(job: Job) -> str:
    """The endpoint ``job`` connects to (a mapped item's group stands for one)."""
    target = job.target
    return job.host if target is None else endpoint_of(target)


class Endpoint:
    """The health of one endpoint of a host, and the jobs waiting for it to come back."""

    __slots__ = (
        "aside",
        "failures",
        "gave_up",
        "host",
        "name",
        "parked_for",
        "parked_until",
        "probe",
        "probes",
    )

    def __init__(self, name: str, host: str, cooldown_s: float) -> None:
        self.name = name
        self.host = host
        self.failures = 0
        self.probes = 0
        self.parked_for = cooldown_s
        self.parked_until = -math.inf
        #: The job probing it now (the first sent after a cool-down).
        self.probe: Job | None = None
        self.gave_up: Error | None = None
        #: Jobs taken while it is parked or probed: they wait for the probe's outcome.
        self.aside: deque[Job] = deque()

    def state(self, now: float) -> str:
        if self.gave_up is not None:
            return "dead"
        if self.probe is not None:
            return "probing"
        if self.parked_until > now:
            return "parked"
        return "ok"


#: Endpoint states from the least to the most worth showing.
_RANK = {"ok": 0, "parked": 1, "probing": 2, "dead": 3}


class Health:
    """The endpoints of host ``host`` whose connections failed lately."""

    __slots__ = ("_cooldown_s", "_dead_after", "_dead_probes", "endpoints", "host")

    def __init__(self, host: str, politeness: Politeness) -> None:
        self.host = host
        self._dead_after = politeness.dead_after
        self._dead_probes = politeness.dead_probes
        self._cooldown_s = politeness.dead_cooldown_s
        self.endpoints: dict[str, Endpoint] = {}

    @property
    def aside(self) -> int:
        """Jobs waiting aside, over every endpoint."""
        return sum(len(endpoint.aside) for endpoint in self.endpoints.values())

    @property
    def holding(self) -> bool:
        """Whether a job may have to wait aside now (an endpoint is parked or probed); only
        then does the scheduler ask about each job it takes (see :meth:`take`)."""
        return any(
            endpoint.gave_up is None and endpoint.parked_until > -math.inf
            for endpoint in self.endpoints.values()
        )

    def take(self, queue: deque[Job], now: float) -> tuple[Job | None, int]:
        """The first job of ``queue`` that may start at ``now`` (``None``: none), the ones
        before it set aside (see :meth:`hold`), and how many were."""
        held = 0
        while queue:
            job = queue.popleft()
            if not self.hold(job, now):
                return job, held
            held += 1
        return None, held

    def hold(self, job: Job, now: float) -> bool:
        """Whether ``job``, just taken from its host's queue at loop time ``now``, must wait
        aside (its endpoint is parked, or a probe of it is out); if not, it may be sent (as the
        endpoint's probe, when its cool-down is over)."""
        endpoint = self.endpoints.get(endpoint_of_job(job))
        if endpoint is None or endpoint.gave_up is not None or endpoint.parked_until == -math.inf:
            return False
        if endpoint.probe is None and now >= endpoint.parked_until:
            endpoint.probe = job  # the first request after a cool-down is a probe
            return False
        endpoint.aside.append(job)
        return True

    def refusal(self, job: Job) -> Error | None:
        """Why ``job`` must fail without being sent (its endpoint was given up), if it must."""
        endpoint = self.endpoints.get(endpoint_of_job(job))
        return None if endpoint is None else endpoint.gave_up

    def learn(self, job: Job, result: Finished, now: float) -> tuple[Endpoint | None, list[Job]]:
        """Learn from the outcome of ``job``'s attempt.

        Returns the endpoint it parked (the caller wakes it with :meth:`wake` at its
        ``parked_until``), and the jobs that waited aside and go back to the host's queue (their
        endpoint connected again, or was given up).
        """
        error = result.error
        name = endpoint_of_job(job)
        if (
            error is not None
            and error.kind in UNREACHABLE
            and (error.endpoint is None or error.endpoint == name)
        ):
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                endpoint = self.endpoints[name] = Endpoint(name, self.host, self._cooldown_s)
            return self._unreachable(endpoint, job, error, now)
        # Any other outcome (an answer, a timeout, a hop elsewhere that failed): it connected.
        endpoint = self.endpoints.get(name)
        if endpoint is None or endpoint.gave_up is not None:
            return None, []  # (given up stays given up for the run)
        del self.endpoints[name]
        return None, list(endpoint.aside)

    def _unreachable(
        self, endpoint: Endpoint, job: Job, error: Error, now: float
    ) -> tuple[Endpoint | None, list[Job]]:
        endpoint.failures += 1
        if endpoint.gave_up is not None or self._dead_after == 0:
            return None, []  # (dead_after 0: never parked)
        if endpoint.probe is job:
            endpoint.probe = None
            endpoint.probes += 1
            if endpoint.probes >= self._dead_probes:
                endpoint.gave_up = Error(
                    error.kind,
                    f"{endpoint.name} given up after {endpoint.failures} consecutive connection "
                    f"failures and {endpoint.probes} failed probes; not sent "
                    f"(last: {error.message})",
                )
                back, endpoint.aside = list(endpoint.aside), deque()
                return None, back
            endpoint.parked_for = min(_PARK_MAX_S, endpoint.parked_for * 2)
            endpoint.parked_until = now + endpoint.parked_for
            return endpoint, []
        if endpoint.failures >= self._dead_after and endpoint.parked_until == -math.inf:
            endpoint.parked_until = now + endpoint.parked_for
            return endpoint, []
        return None, []

    def wake(self, endpoint: Endpoint, now: float) -> Job | None:
        """The job to send as ``endpoint``'s probe now that its cool-down is over (``None``:
        none waits, or it is no longer parked: the next job taken for it probes it)."""
        if (
            self.endpoints.get(endpoint.name) is not endpoint
            or endpoint.gave_up is not None
            or endpoint.probe is not None
            or now < endpoint.parked_until
            or not endpoint.aside
        ):
            return None
        return endpoint.aside.popleft()

    def forget(self, job: Job) -> Endpoint | None:
        """``job`` ended without an outcome (refused, given back, its lease lost): if it was
        an endpoint's probe, that endpoint, whose next job may probe it (see :meth:`wake`)."""
        for endpoint in self.endpoints.values():
            if endpoint.probe is job:
                endpoint.probe = None
                return endpoint
        return None

    def drop(self) -> list[Job]:
        """Every job waiting aside, taken out (the host is given up to another owner)."""
        dropped: list[Job] = []
        for endpoint in self.endpoints.values():
            dropped += endpoint.aside
            endpoint.aside.clear()
        return dropped

    def worst(self, now: float) -> Endpoint | None:
        """The endpoint most worth showing: given up, probed, parked, or else the one with the
        most failures (``None``: none is kept)."""
        return max(
            self.endpoints.values(),
            key=lambda endpoint: (_RANK[endpoint.state(now)], endpoint.failures),
            default=None,
        )

    def plain(self) -> bool:
        """True when no endpoint is kept (every one of them connects)."""
        return not self.endpoints
