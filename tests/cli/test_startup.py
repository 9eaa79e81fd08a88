"""Start-up loads only what a plain fetch uses: the modules of other commands and of
options not given (a progress display, robots.txt, a config file, the archive, reading a
journal back) are imported when they are needed, so a short job starts quickly."""

from __future__ import annotations

import subprocess
import sys

#: Modules a plain ``shoal fetch`` must not load before it needs them.
LATER = (
    "rich.table",
    "rich.live",
    "protego",
    "tomllib",
    "warcio",
    "shoal.cli.export",
    "shoal.store.reader",
    "shoal.store.summary",
    "shoal.store.sqlite.reader",
    "shoal.reporting.progress",
    "shoal.sinks.warc",
    "shoal.crawling.links",
    "selectolax",
    "w3lib.url",
    "asyncpg",
    "shoal.store.postgres",
)


def test_the_command_line_loads_no_module_before_it_needs_it() -> None:
    probe = (
        "import sys, shoal.cli.main; "
        f"print(' '.join(sorted(m for m in sys.modules if m.startswith({LATER!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == []


def test_the_summary_is_plain_text_in_two_columns() -> None:
    from shoal.reporting import Statistics
    from shoal.reporting.summary import render_summary

    stats = Statistics.from_dict(
        {
            "elapsed_s": 2.0,
            "total": 3,
            "total_is_estimate": False,
            "done": 3,
            "ok": 2,
            "failed": 1,
            "skipped": 0,
            "duplicates": 0,
            "retries": 1,
            "in_flight": 0,
            "queued": 0,
            "waiting_retry": 0,
            "bytes": 2048,
            "by_status": {"2xx": 2},
            "by_error": {"timeout": 1},
            "job_ok": 2,
            "job_failed": 1,
            "interrupted": False,
            "latency_max_ms": 12.0,
            "latency_buckets": [[100, 3]],
        }
    )
    lines = render_summary(stats).splitlines()
    assert lines[0] == "shoal summary"
    assert lines[2] == " requests    3 this run: 2 ok, 1 failed; 1 retry"
    assert lines[-2].startswith(" latency     p50 ")
    assert "[" not in "".join(lines)  # no markup: it goes out as it is


def test_a_run_sets_the_collector_for_many_requests_in_flight_and_restores_it() -> None:
    import gc

    from shoal.cli.run import GC_THRESHOLDS, run_async

    seen: list[tuple[int, int, int]] = []
    frozen: list[int] = []

    async def job() -> int:
        seen.append(gc.get_threshold())
        frozen.append(gc.get_freeze_count())
        return 7

    before = gc.get_threshold()
    assert run_async(job()) == 7
    assert seen == [GC_THRESHOLDS]
    assert frozen[0] > 0  # start-up's objects are left out of the run's collections
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
