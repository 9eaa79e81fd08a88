"""Per-host rules and pacing, on a fake clock: the times below are given, never slept."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shoal import ConfigError
from shoal.config import HostPolicy, Politeness, Timeouts
from shoal.result import Error, ErrorKind, Result
from shoal.scheduling import HostControl, HostRule, HostRules
from shoal.scheduling.hosts import LATE_CARRY_MAX_S

RNG = random.Random(7)


def control(politeness: Politeness | None = None, **rule: object) -> HostControl:
    rule.setdefault("max_in_flight", 8)
    return HostControl(
        HostRule(**rule),  # type: ignore[arg-type]
        politeness or Politeness(),
        retry_after_max_s=120,
    )


def start(host: HostControl, now: float, sent_after_s: float = 0.0) -> None:
    """Start a request at ``now``, on the wire ``sent_after_s`` later."""
    if host.started(now):
        host.sent(now + sent_after_s, RNG)


def starts(
    host: HostControl, count: int, now: float = 0.0, sent_after_s: float = 0.0
) -> list[float]:
    """Start ``count`` requests as early as the host allows, each sent ``sent_after_s``
    after it starts; their send times."""
    times = []
    for _ in range(count):
        now = max(now, host.ready_at())
        start(host, now, sent_after_s)
        times.append(now + sent_after_s)
    return times


def answer(
    status: int | None = 200,
    *,
    error: ErrorKind | None = None,
    retry_after: str | None = None,
    ttfb_ms: float = 10.0,
) -> Result:
    headers = CIMultiDict[str]()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Result(
        url="http://a.test/",
        status=status,
        error=None if error is None else Error(error, "test"),
        headers=CIMultiDictProxy(headers),
        ttfb_ms=ttfb_ms,
    )


# -- pacing --------------------------------------------------------------------------------


def test_an_unpaced_host_is_always_ready() -> None:
    host = control()
    assert host.ready_at() == -math.inf
    assert not host.paced
    assert not host.started(5.0)  # nothing to report: it is not paced
    assert host.ready_at() == -math.inf


def test_rate_spaces_starts_evenly() -> None:
    host = control(per_second=4.0)
    assert starts(host, 5, now=10.0) == [10.0, 10.25, 10.5, 10.75, 11.0]


def test_pace_counts_from_the_send_not_the_start() -> None:
    # Each request takes 0.2 s to be sent (a lookup, a connection): the gaps between sends
    # stay a full interval, so starts are 0.45 s apart.
    host = control(per_second=4.0)
    assert starts(host, 3, now=10.0, sent_after_s=0.2) == pytest.approx([10.2, 10.65, 11.1])


def test_no_request_starts_while_the_last_one_waits_to_be_sent() -> None:
    host = control(per_second=100.0, burst=5)
    assert host.started(0.0)
    assert host.unsent == 1 and host.ready_at() == math.inf
    host.sent(3.0, RNG)  # a slow connection: the next is due once this one is out
    assert host.unsent == 0 and host.ready_at() == pytest.approx(3.01 - 0.04)


def test_a_delay_counts_from_the_send() -> None:
    host = control(delay_s=1.0)
    assert starts(host, 3, now=0.0, sent_after_s=0.5) == pytest.approx([0.5, 2.0, 3.5])


def test_rate_allows_a_burst_then_spaces() -> None:
    host = control(per_second=2.0, burst=3)
    assert starts(host, 5, now=0.0) == [0.0, 0.0, 0.0, 0.5, 1.0]


def test_rate_does_not_bank_idle_time_beyond_the_burst() -> None:
    host = control(per_second=10.0, burst=2)
    starts(host, 2, now=0.0)
    # A long idle spell earns at most a burst again, not a flood.
    assert starts(host, 4, now=100.0) == [100.0, 100.0, 100.1, pytest.approx(100.2)]


@pytest.mark.parametrize("rate", [100.0, 200.0, 300.0])
def test_late_wake_ups_do_not_lower_the_rate(rate: float) -> None:
    # Each start comes up to 3 ms after the host is due (a loop timer rounds up to the
    # millisecond, a busy loop adds more) and goes on the wire 0.3 ms later.
    host = control(per_second=rate)
    late = random.Random(24)
    interval = 1 / rate
    carry = min(interval, LATE_CARRY_MAX_S)
    now, sends = 0.0, []
    for _ in range(3000):
        now = max(now, host.ready_at()) + late.uniform(0.0, 0.003)
        assert host.started(now)
        now += 0.0003
        host.sent(now, RNG)
        sends.append(now)
    achieved = (len(sends) - 1) / (sends[-1] - sends[0])
    assert 0.98 * rate <= achieved <= rate * 1.001, achieved
    # And never above the rate over any window, but for the carried lateness: send j is
    # at least (j - i) intervals less the carry after send i.
    highest = -math.inf
    for index, sent in enumerate(sends):
        ahead = sent - index * interval
        assert ahead >= highest - carry - 1e-9, index
        highest = max(highest, ahead)


def test_an_idle_spell_starts_the_schedule_again() -> None:
    host = control(per_second=100.0)
    starts(host, 3, now=0.0)
    # Idle for longer than the carry: the next two are a full interval apart, not closer.
    assert starts(host, 2, now=0.5) == [0.5, pytest.approx(0.51)]


def test_a_send_later_than_the_carry_is_not_made_up() -> None:
    host = control(per_second=10.0)
    start(host, 0.0)
    start(host, 0.1 + LATE_CARRY_MAX_S * 4)  # sent 20 ms late: a slow connection
    assert host.ready_at() == pytest.approx(0.2 + LATE_CARRY_MAX_S * 4)


def test_delay_with_jitter_stays_within_bounds() -> None:
    host = control(delay_s=1.0, jitter=0.5)
    times = starts(host, 50)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(1.0 <= gap <= 1.5 for gap in gaps)
    assert max(gaps) - min(gaps) > 0.1  # jitter does vary them


def test_rate_and_delay_together_take_the_slower() -> None:
    host = control(per_second=10.0, delay_s=0.5)
    times = starts(host, 3)
    assert times == [0.0, 0.5, 1.0]


def test_a_shard_gets_its_share_of_the_rate() -> None:
    half = HostControl(HostRule(max_in_flight=4, per_second=10.0), Politeness(), share=0.5)
    assert starts(half, 3) == [0.0, 0.2, pytest.approx(0.4)]


# -- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_pauses_the_host(status: int) -> None:
    host = control()
    host.observe(answer(status, retry_after="3"), started=0.0, now=1.0)
    assert host.ready_at() == pytest.approx(4.0)
    assert host.state(2.0) == "paused"
    assert host.state(4.5) == "ok"


def test_retry_after_pause_is_capped() -> None:
    host = control()
    host.observe(answer(429, retry_after="100000"), started=0.0, now=0.0)
    assert host.ready_at() == pytest.approx(120.0)


def test_retry_after_on_other_statuses_does_not_pause() -> None:
    host = control()
    host.observe(answer(200, retry_after="30"), started=0.0, now=0.0)
    host.observe(answer(500, retry_after="30"), started=0.0, now=0.0)
    assert host.ready_at() == -math.inf


# -- adaptive throttling -------------------------------------------------------------------------


def test_adaptive_halves_the_window_once_per_round() -> None:
    host = control(Politeness(adaptive=True))
    assert host.cap == 8
    host.observe(answer(429), started=0.0, now=1.0)
    assert host.cap == 4
    # Answers to requests sent before the slow-down say nothing new.
    host.observe(answer(429), started=0.5, now=1.1)
    assert host.cap == 4
    host.observe(answer(503), started=1.2, now=2.0)
    assert host.cap == 2
    host.observe(answer(None, error=ErrorKind.TIMEOUT), started=2.1, now=3.0)
    assert host.cap == 1
    assert host.state(3.0) == "slowed"


def test_adaptive_at_one_in_flight_adds_a_delay_then_recovers_slowly() -> None:
    host = control(Politeness(adaptive=True), max_in_flight=1)
    host.observe(answer(429), started=0.0, now=1.0)
    first = host.extra_delay_s
    assert first > 0 and host.paced
    host.observe(answer(429), started=1.5, now=2.0)
    assert host.extra_delay_s == pytest.approx(2 * first)
    successes = 0
    while host.extra_delay_s > 0 and successes < 1000:
        host.observe(answer(200), started=3.0, now=3.0)
        successes += 1
    assert 5 < successes < 1000  # slowly, but it does recover
    assert host.state(10.0) == "ok"


def test_adaptive_window_grows_back_additively() -> None:
    host = control(Politeness(adaptive=True))
    host.observe(answer(429), started=0.0, now=1.0)
    assert host.cap == 4
    for _ in range(3):
        host.observe(answer(200), started=2.0, now=2.0)
    assert host.cap == 4
    for _ in range(2):
        host.observe(answer(200), started=2.0, now=2.0)
    assert host.cap == 5  # about one more per window (4) of successes
    for _ in range(200):
        host.observe(answer(200), started=2.0, now=2.0)
    assert host.cap == 8  # and never beyond the host's own cap


def test_adaptive_reads_rising_time_to_first_byte_as_load() -> None:
    host = control(Politeness(adaptive=True))
    for _ in range(20):
        host.observe(answer(200, ttfb_ms=20), started=0.0, now=0.0)
    assert host.cap == 8
    host.observe(answer(200, ttfb_ms=2000), started=1.0, now=3.0)
    assert host.cap == 4


def test_without_adaptive_429s_do_not_change_the_cap() -> None:
    host = control()
    for now in range(5):
        host.observe(answer(429), started=now, now=now + 0.5)
    assert host.cap == 8 and host.state(10.0) == "ok"


# -- rules by host pattern -----------------------------------------------------------------------


def test_patterns_cascade_from_wide_to_exact() -> None:
    rules = HostRules(
        Politeness(
            delay_s=0.1,
            hosts={
                "*": HostPolicy(per_second=10),
                "*.example.com": HostPolicy(max_in_flight=2, headers={"A": "1"}),
                "API.example.com": HostPolicy(per_second=1, headers={"B": "2"}),
            },
        ),
        max_in_flight=8,
    )
    other = rules.for_host("other.org")
    assert (other.max_in_flight, other.per_second, other.delay_s) == (8, 10, 0.1)
    www = rules.for_host("www.example.com")
    assert (www.max_in_flight, www.per_second, www.headers) == (2, 10, {"A": "1"})
    bare = rules.for_host("example.com")  # *.example.com covers the domain itself
    assert bare.max_in_flight == 2
    api = rules.for_host("api.example.com")
    assert (api.max_in_flight, api.per_second) == (2, 1)
    assert api.headers == {"A": "1", "B": "2"}
    assert not rules.uniform


def test_timeouts_override() -> None:
    short = Timeouts(total_s=1, connect_s=1, read_s=1)
    rules = HostRules(Politeness(hosts={"slow.test": HostPolicy(timeouts=short)}), 8)
    assert rules.for_host("slow.test").timeouts == short
    assert rules.for_host("fast.test").timeouts is None


def test_idn_patterns_match_punycode_hosts() -> None:
    rules = HostRules(Politeness(hosts={"bücher.example": HostPolicy(max_in_flight=1)}), 8)
    assert rules.for_host("xn--bcher-kva.example").max_in_flight == 1


@pytest.mark.parametrize("pattern", ["", "a*.b", "host:80", "a/b", "*.", "user@host"])
def test_bad_patterns_are_config_errors(pattern: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Politeness(hosts={pattern: HostPolicy()})
    assert raised.value.option == "hosts"


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"per_second": 0}, "per_second"),
        ({"burst": 0}, "burst"),
        ({"delay_s": -1}, "delay_s"),
        ({"jitter": 1.5}, "jitter"),
        ({"max_in_flight": 0}, "max_in_flight"),
    ],
)
def test_bad_host_policies_are_config_errors(options: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        HostPolicy(**options)  # type: ignore[arg-type]
    assert raised.value.option == name


def test_ipv6_pattern_is_accepted() -> None:
    rules = HostRules(Politeness(hosts={"::1": HostPolicy(max_in_flight=1)}), 8)
    assert rules.for_host("::1").max_in_flight == 1
