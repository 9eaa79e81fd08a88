"""Latency histograms, the recorder's counts and snapshots, and the size/duration units."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from shoal import Engine, Network, RetryPolicy
from shoal.latency import LatencyHistogram
from shoal.reporting import Latency, Recorder, Statistics
from shoal.reporting.units import format_bytes, format_duration, parse_size
from shoal.result import Error, ErrorKind, Result
from tests.conftest import resolver
from tests.servers import Misbehaving

# -- LatencyHistogram -------------------------------------------------------------------------


def exact_percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def histogram_of(values: list[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.add(value)
    return histogram


def test_empty_histogram() -> None:
    histogram = LatencyHistogram()
    assert histogram.percentile(0.5) is None
    assert histogram.snapshot() == Latency()
    assert histogram.snapshot().count == 0


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_percentiles_of_a_uniform_range(fraction: float) -> None:
    values = [float(ms) for ms in range(1, 1001)]
    found = histogram_of(values).percentile(fraction)
    assert found == pytest.approx(fraction * 1000, rel=0.05)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_percentiles_of_a_log_normal_sample(fraction: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(4.0, 1.2) for _ in range(20_000)]  # median ~55 ms, long tail
    found = histogram_of(values).percentile(fraction)
    assert found == pytest.approx(exact_percentile(values, fraction), rel=0.05)


def test_snapshot_of_known_data() -> None:
    values = [10.0] * 50 + [100.0] * 40 + [1000.0] * 9 + [5000.0]
    latency = histogram_of(values).snapshot()
    assert latency.count == 100
    assert latency.p50_ms == pytest.approx(10.0, rel=0.05)
    assert latency.p90_ms == pytest.approx(100.0, rel=0.05)
    assert latency.p99_ms == pytest.approx(1000.0, rel=0.05)
    assert latency.max_ms == 5000.0


def test_percentile_never_exceeds_the_maximum() -> None:
    histogram = histogram_of([123.456])
    assert histogram.percentile(0.5) == pytest.approx(123.456, rel=0.05)
    assert histogram.percentile(1.0) == pytest.approx(123.456, rel=0.05)
    for fraction in (0.5, 0.9, 0.99, 1.0):
        found = histogram.percentile(fraction)
        assert found is not None and found <= 123.456


def test_sub_millisecond_and_zero_latencies() -> None:
    latency = histogram_of([0.0, 0.0, 0.0, 0.2]).snapshot()
    assert latency.p50_ms == 0.0 or (latency.p50_ms is not None and latency.p50_ms < 0.05)
    assert latency.max_ms == 0.2


def test_percentiles_are_ordered() -> None:
    rng = random.Random(3)
    latency = histogram_of([rng.expovariate(1 / 80) for _ in range(5000)]).snapshot()
    assert latency.p50_ms is not None and latency.p90_ms is not None
    assert latency.p99_ms is not None and latency.max_ms is not None
    assert latency.p50_ms <= latency.p90_ms <= latency.p99_ms <= latency.max_ms


# -- Recorder ---------------------------------------------------------------------------------


def make_result(
    status: int | None = 200,
    kind: ErrorKind | None = None,
    size: int = 0,
    elapsed_ms: float | None = 10.0,
) -> Result:
    error = None if kind is None else Error(kind, "x")
    return Result(
        url="http://a.test/", status=status, error=error, bytes=size, elapsed_ms=elapsed_ms
    )


def test_recorder_counts_by_status_class_and_error_kind() -> None:
    recorder = Recorder()
    for outcome in [
        make_result(200, size=100),
        make_result(204, size=0),
        make_result(301),
        make_result(404, size=50),
        make_result(503, kind=ErrorKind.HTTP_STATUS),
        make_result(None, kind=ErrorKind.TIMEOUT, elapsed_ms=None),
        make_result(None, kind=ErrorKind.TIMEOUT),
        make_result(None, kind=ErrorKind.DNS, elapsed_ms=None),
    ]:
        recorder.add(outcome)
    stats = recorder.snapshot(in_flight=3, queued=4, waiting_retry=5)
    assert stats.done == 8
    assert stats.ok == 4
    assert stats.failed == 4
    assert stats.bytes == 150
    assert dict(stats.by_status) == {"2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1}
    assert dict(stats.by_error) == {"http_status": 1, "timeout": 2, "dns": 1}
    assert stats.latency.count == 6  # results without a time are not in the histogram
    assert (stats.in_flight, stats.queued, stats.waiting_retry) == (3, 4, 5)


def test_a_snapshot_prints_as_a_few_readable_lines() -> None:
    recorder = Recorder()
    for outcome in [make_result(200, size=100), make_result(None, kind=ErrorKind.TIMEOUT)]:
        recorder.add(outcome)
    running = recorder.snapshot(in_flight=3, queued=4)
    text = str(running)
    rows = text.splitlines()
    assert rows[0] == "shoal statistics"
    assert 5 <= len(rows) <= 15 and all(len(row) < 100 for row in rows), text
    assert "running" in rows[1] and "3 in flight, 4 queued" in text
    assert "2 this run: 1 ok, 1 failed" in text and "timeout: 1" in text
    recorder.finish()
    assert "finished in" in str(recorder.snapshot())
    assert repr(running).startswith("Statistics(elapsed_s=")  # every field, as before


def test_recent_errors_keep_the_latest_of_each_kind() -> None:
    recorder = Recorder()
    for n in range(8):
        result = make_result(None, kind=ErrorKind.TIMEOUT)
        result.url = f"http://t.test/{n}"
        recorder.add(result)
    recorder.add(make_result(None, kind=ErrorKind.DNS))
    recorder.add(make_result(200))
    stats = recorder.snapshot()
    timeouts = [s.url for s in stats.recent_errors if s.kind == "timeout"]
    assert sorted(timeouts) == [f"http://t.test/{n}" for n in range(3, 8)]  # the latest 5
    assert [s.kind for s in stats.recent_errors].count("dns") == 1
    assert stats.recent_errors == tuple(sorted(stats.recent_errors, key=lambda s: -s.at))
    again = Statistics.from_dict(stats.to_dict())
    assert again.recent_errors == stats.recent_errors
    both = Statistics.combine([stats, again])
    assert [s.kind for s in both.recent_errors].count("timeout") == 5  # still capped


def test_finished_says_the_run_ended() -> None:
    recorder = Recorder()
    recorder.start()
    assert not recorder.snapshot().finished
    running = recorder.snapshot()
    recorder.finish()
    ended = recorder.snapshot()
    assert ended.finished and Statistics.from_dict(ended.to_dict()).finished
    assert not Statistics.combine([ended, running]).finished  # one process still runs
    assert Statistics.combine([ended, ended]).finished
    recorder.start()  # a next run
    assert not recorder.snapshot().finished


def test_snapshot_is_a_frozen_copy() -> None:
    recorder = Recorder()
    recorder.add(make_result(200))
    before = recorder.snapshot()
    recorder.add(make_result(500, kind=ErrorKind.HTTP_STATUS))
    assert before.done == 1
    assert dict(before.by_status) == {"2xx": 1}
    assert dict(before.by_error) == {}
    with pytest.raises(TypeError, match="does not support item assignment"):
        before.by_status["2xx"] = 5  # type: ignore[index]
    with pytest.raises(AttributeError):
        before.done = 9  # type: ignore[misc]
    assert recorder.snapshot().done == 2


async def test_the_run_counters_are_the_engines_own_count(
    server: Misbehaving, tmp_path: Path
) -> None:
    # Seven distinct requests and one duplicate: a first answer of 503 retried once, a 503
    # every time retried twice (then final: a status is an answer), a dropped connection
    # retried twice (then failed); then the same job again, where all seven are final.
    urls = [server.url(f"/ok?n={n}") for n in range(4)]
    urls += [server.url("/ok?n=0"), server.url("/flaky/k?fail=1"), server.url("/status/503")]
    urls.append(server.url("/drop"))
    retry = RetryPolicy(retries=2, backoff_base_s=0.001, backoff_max_s=0.002)
    journal = str(tmp_path / "job.journal")
    runs = []
    for _ in range(2):
        async with Engine(retry=retry, network=Network(resolver=resolver())) as engine:
            runs.append(await asyncio.wait_for(engine.run(urls, journal=journal), 15))
    first, again = runs
    assert (first.total, first.total_is_estimate) == (7, False)
    assert (first.done, first.ok, first.failed) == (7, 6, 1)
    assert (first.skipped, first.duplicates, first.retries) == (0, 1, 5)
    assert (first.job_ok, first.job_failed) == (6, 1)
    assert (again.total, again.done, again.skipped, again.retries) == (7, 0, 7, 0)
    assert (again.job_ok, again.job_failed) == (6, 1)  # the job's, not this run's
    assert not first.interrupted and not again.interrupted
    assert server.log.total == 4 + 2 + 3 + 3  # each try once; the second run asked nothing
    for stats in runs:  # and the snapshot's dictionary form carries them as they are
        assert Statistics.from_dict(stats.to_dict()).to_dict() == stats.to_dict()


def test_elapsed_stops_at_finish() -> None:
    recorder = Recorder()
    recorder.start()
    recorder.finish()
    first = recorder.snapshot().elapsed_s
    assert first >= 0
    assert recorder.snapshot().elapsed_s == first  # frozen once finished


def statistics(**fields: object) -> Statistics:
    base: dict[str, object] = {
        "elapsed_s": 10.0,
        "total": None,
        "total_is_estimate": False,
        "done": 0,
        "ok": 0,
        "failed": 0,
        "skipped": 0,
        "duplicates": 0,
        "retries": 0,
        "in_flight": 0,
        "queued": 0,
        "waiting_retry": 0,
        "bytes": 0,
        "by_status": {},
        "by_error": {},
        "latency": Latency(),
        "job_ok": 0,
        "job_failed": 0,
        "interrupted": False,
    }
    base.update(fields)
    return Statistics(**base)  # type: ignore[arg-type]


def test_statistics_rates_remaining_and_eta() -> None:
    stats = statistics(elapsed_s=10.0, done=50, bytes=2048, total=200, skipped=30)
    assert stats.requests_per_s == 5.0
    assert stats.bytes_per_s == 204.8
    assert stats.remaining == 120
    assert stats.eta_s == 24.0


def test_statistics_without_total_or_time() -> None:
    assert statistics(total=None, done=5).remaining is None
    assert statistics(total=None, done=5).eta_s is None
    idle = statistics(elapsed_s=0.0, done=0, total=10)
    assert idle.requests_per_s == 0.0
    assert idle.bytes_per_s == 0.0
    assert idle.eta_s is None
    assert statistics(total=10, done=12).remaining == 0  # an estimate can be too low


# -- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("0", 0),
        ("50MiB", 50 * 1024**2),
        ("50mib", 50 * 1024**2),
        ("50 MiB", 50 * 1024**2),
        (" 2 g ", 2 * 1024**3),
        ("1.5G", int(1.5 * 1024**3)),
        ("512KiB", 512 * 1024),
        ("10KB", 10 * 1024),
        ("2k", 2048),
        ("0.5k", 512),
        ("1T", 1024**4),
        ("1tb", 1024**4),
        ("7b", 7),
        ("7B", 7),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "junk", "k", "kb", "MiB", "-1", "-1k", "1p", "1.2.3", "nan"])
def test_parse_size_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the input
        parse_size(text)


@pytest.mark.parametrize("text", ["inf", "1e400"])
def test_parse_size_rejects_infinity_with_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the input
        parse_size(text)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5.5 * 1024**2, "5.5 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (2 * 1024**4, "2.0 TiB"),
        (1024**5, "1024.0 TiB"),
        (-2048, "-2.0 KiB"),
    ],
)
def test_format_bytes(count: float, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0:00"),
        (0.4, "0:00"),
        (0.5, "0:01"),
        (59, "0:59"),
        (75, "1:15"),
        (599.6, "10:00"),
        (3599.4, "59:59"),
        (3600, "1:00:00"),
        (3700, "1:01:40"),
        (2 * 86400, "48:00:00"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
