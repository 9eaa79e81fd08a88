"""Connection health per endpoint, on a fake clock: the times below are given, never slept."""

from __future__ import annotations

import itertools
import math

import pytest
from yarl import URL

from shoal.config import Politeness
from shoal.job import Job
from shoal.result import Error, ErrorKind, Result, endpoint, endpoint_of
from shoal.scheduling.endpoints import Health
from shoal.sources.items import entry_for

_SEQ = itertools.count(1)
DEAD = "http://a.test:1"


def job(url: str = f"{DEAD}/") -> Job:
    seq = next(_SEQ)
    return Job.admit(seq, entry_for(url, seq))


def unreachable(where: str | None = None) -> Result:
    return Result(url="http://a.test:1/", error=Error(ErrorKind.CONNECT, "refused", endpoint=where))


def answer() -> Result:
    return Result(url="http://a.test:1/", status=200)


def health(politeness: Politeness) -> Health:
    return Health("a.test", politeness)


def fail(state: Health, times: int, now: float = 0.0) -> None:
    for _ in range(times):
        state.learn(job(), unreachable(), now)


def probe(state: Health, now: float) -> Job:
    """The job the endpoint's cool-down lets go as its probe at ``now``."""
    sent = job()
    assert not state.hold(sent, now)
    return sent


def test_an_endpoint_is_scheme_host_and_port() -> None:
    assert endpoint(False, "a.test", None) == "http://a.test:80"
    assert endpoint(True, "a.test", None) == "https://a.test:443"
    assert endpoint(False, "::1", 8080) == "http://[::1]:8080"
    assert endpoint_of(URL("https://A.test:8443/x?y")) == "https://a.test:8443"
    assert endpoint_of(URL("http://a.test/")) == "http://a.test:80"


def test_consecutive_connection_failures_park_the_endpoint() -> None:
    state = health(Politeness(dead_after=3, dead_cooldown_s=10))
    fail(state, 2)
    assert not state.hold(job(), 0.5)  # not parked yet
    parked, back = state.learn(job(), unreachable(), 1.0)
    assert parked is not None and back == []
    assert parked.name == DEAD and parked.parked_until == pytest.approx(11.0)
    assert parked.state(5.0) == "parked"
    waiting = job()
    assert state.hold(waiting, 5.0)  # it waits aside until the cool-down ends
    assert list(parked.aside) == [waiting]


def test_the_other_ports_of_the_host_are_not_held() -> None:
    state = health(Politeness(dead_after=1, dead_cooldown_s=10))
    fail(state, 1)
    assert state.hold(job(), 1.0)
    for url in ("http://a.test:2/", "http://a.test/", "https://a.test:1/"):
        assert not state.hold(job(url), 1.0), url
    assert list(state.endpoints) == [DEAD]


def test_a_success_resets_the_count() -> None:
    state = health(Politeness(dead_after=3))
    for _ in range(10):
        fail(state, 2)
        state.learn(job(), answer(), 0.0)  # any answer: the endpoint is there
    assert state.plain()


def test_a_failure_elsewhere_is_not_the_endpoints() -> None:
    # A redirect hop to another endpoint (here: another port of the same host) that cannot
    # be reached says nothing of the one the request named: that one answered.
    state = health(Politeness(dead_after=1))
    state.learn(job(), unreachable("http://a.test:2"), 0.0)
    assert state.plain()
    state.learn(job(), unreachable(DEAD), 0.0)
    assert list(state.endpoints) == [DEAD]


def test_probe_after_the_cool_down_then_give_up() -> None:
    state = health(Politeness(dead_after=2, dead_cooldown_s=10, dead_probes=2))
    fail(state, 2)
    [parked] = state.endpoints.values()
    held = [job(), job()]
    assert all(state.hold(waiting, 5.0) for waiting in held)
    assert state.wake(parked, 9.0) is None  # not yet
    first = state.wake(parked, 10.0)
    assert first is held[0]
    assert not state.hold(first, 10.0)  # the probe
    assert parked.state(10.0) == "probing"
    assert state.hold(job(), 10.2)  # one probe at a time: another waits
    again, back = state.learn(first, unreachable(), 10.5)
    assert again is parked and back == []
    assert parked.parked_until == pytest.approx(30.5)  # the cool-down doubled
    second = probe(state, 30.5)
    _, back = state.learn(second, unreachable(), 31.0)
    assert parked.gave_up is not None and parked.gave_up.kind is ErrorKind.CONNECT
    assert parked.gave_up.message.startswith(f"{DEAD} given up after 4 consecutive")
    assert len(back) == 2  # the jobs that waited come back, to fail without being sent
    assert parked.state(40.0) == "dead"
    assert not state.hold(job(), 40.0)
    assert state.refusal(job()) is parked.gave_up
    assert state.refusal(job("http://a.test:2/")) is None


def test_a_successful_probe_restores_the_endpoint() -> None:
    state = health(Politeness(dead_after=1, dead_cooldown_s=5))
    fail(state, 1)
    waiting = job()
    assert state.hold(waiting, 1.0)
    sent = probe(state, 5.0)
    parked, back = state.learn(sent, answer(), 5.1)
    assert parked is None and back == [waiting]
    assert state.plain() and not state.hold(job(), 5.2)


def test_a_probe_that_never_ran_lets_the_next_one_probe() -> None:
    state = health(Politeness(dead_after=1, dead_cooldown_s=5))
    fail(state, 1)
    waiting = job()
    assert state.hold(waiting, 1.0)
    sent = probe(state, 5.0)
    endpoint = state.forget(sent)  # refused by robots.txt, say
    assert endpoint is not None and endpoint.probe is None
    assert state.wake(endpoint, 5.0) is waiting


def test_dead_endpoints_are_never_given_up_early() -> None:
    state = health(Politeness(dead_after=2, dead_cooldown_s=1, dead_probes=3))
    fail(state, 50)  # failures of requests already in flight do not count as probes
    [parked] = state.endpoints.values()
    assert parked.gave_up is None and parked.parked_until == pytest.approx(1.0)
    assert parked.probes == 0 and parked.parked_until < math.inf


def test_dead_after_zero_never_parks() -> None:
    state = health(Politeness(dead_after=0))
    fail(state, 100)
    assert not state.hold(job(), 0.0)
    assert all(kept.parked_until == -math.inf for kept in state.endpoints.values())
