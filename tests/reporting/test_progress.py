"""The progress line's text: estimates that are never absurd, and a line that fits."""

from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console

from shoal.reporting.progress import Rates, eta_text, plain_line, terminal_line
from shoal.reporting.statistics import Recorder, Statistics
from shoal.reporting.units import format_eta


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (75, "1:15"),
        (3700, "1:01:40"),
        (86_400 + 3 * 3600, "1d 03h"),
        (99 * 86_400 + 23 * 3600, "99d 23h"),
        (100 * 86_400, ">99d"),
        (1.5e15, ">99d"),
        (float("inf"), ">99d"),
    ],
)
def test_eta_formats(seconds: float, shown: str) -> None:
    assert format_eta(seconds) == shown


def _stats(**changes: object) -> Statistics:
    recorder = Recorder()
    recorder.total = 10_000_000
    return dataclasses.replace(recorder.snapshot(in_flight=512), **changes)  # type: ignore[arg-type]


def _rates(per_s: float, bytes_per_s: float = 0.0) -> Rates:
    rates = Rates()
    rates.per_s, rates.bytes_per_s = per_s, bytes_per_s
    return rates


def test_paused_says_paused_and_no_eta() -> None:
    stats = _stats(paused=True, done=10, ok=10, job_ok=10)
    assert eta_text(stats, 1e-12) == "paused"
    line = plain_line(stats, _rates(1e-12))
    assert "paused" in line and "ETA" not in line


def test_no_estimate_when_nothing_moves() -> None:
    stats = _stats(done=10, ok=10, job_ok=10)
    assert eta_text(stats, 0.0) == "ETA --"
    assert eta_text(stats, 1e-9) == "ETA --"  # a rate decayed towards 0, not a rate
    assert eta_text(stats, 100.0) == "ETA 1d 03h"
    assert eta_text(stats, 10_000.0) == "ETA 16:40"


def test_a_resumed_job_is_counted_whole() -> None:
    stats = _stats(skipped=700, done=300, ok=290, failed=10, job_ok=980, job_failed=20)
    line = plain_line(stats, _rates(50))
    assert "1,000/10,000,000 0%" in line and "ok 980" in line and "failed 20" in line
    assert "300 this run" in line


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_the_line_fits_the_terminal(width: int) -> None:
    stats = _stats(
        skipped=1_234_567, done=2_345_678, ok=2_345_000, failed=678, job_ok=3_579_567,
        job_failed=678, waiting_retry=1_234, bytes=10**12,
    )  # fmt: skip
    console = Console(width=width, file=io.StringIO())
    with console.capture() as captured:
        console.print(terminal_line(stats, _rates(123_456, 5e9), width))
    rows = captured.get().rstrip("\n").split("\n")
    assert len(rows) == 1 and len(rows[0]) < width, rows
    assert "3,580,245/10,000,000" in rows[0]
    assert "ETA" in rows[0] or width < 60
