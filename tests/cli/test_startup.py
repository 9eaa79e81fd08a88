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
    "importlib.metadata",
    "shoal.cli.export",
    "shoal.store.reader",
    "shoal.reporting.progress",
    "shoal.sinks.warc",
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
