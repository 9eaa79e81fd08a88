"""The dashboard page in real headless Chromium against a real shared job: two worker
processes (``shoal fetch --store`` with ``--dashboard 0``, and ``shoal worker``) on one
job in the real PostgreSQL, the page read from the first one's dashboard.

``test_dashboard_page.py`` keeps the same page against a fixed snapshot for what a real
job cannot give at will: worker names with markup (escaped, not rendered), exact figures
and ETA, and workers leaving mid-page.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from tests.cli.test_dashboard_cli import _dashboard_url, _post, _stats
from tests.cli.test_workers import (
    Spawn,
    check_once,
    check_server,
    creator,
    join_made,
    owners,
    spawn,
    wait_quiet,
    wait_sending,
    write_urls,
)
from tests.command import finish
from tests.owners_server import OwnersServer
from tests.postgres import pg_dsn
from tests.reporting.test_dashboard_page import READ_JOB, artifacts, browse, browser

if TYPE_CHECKING:
    from playwright.async_api import Browser

__all__ = ["artifacts", "browser", "owners", "pg_dsn", "spawn"]


async def _real_job_view(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """What the page should show of the shared job now, from the process's own
    ``api/stats``: the job's records over the total, and a row per worker (its heartbeat
    left as a pattern, since it ages by the second)."""
    stats = await _stats(http, base)
    done = stats["job_ok"] + stats["job_failed"]
    count = len(stats["workers"])
    rows = sorted(
        [w["worker"], w["machine"], str(w["pid"]), str(w["hosts"]), f"{w['ok']:,}",
         f"{w['failed']:,}"]
        for w in stats["workers"]
    )  # fmt: skip
    return {
        "done": f"{done:,}",
        "total": f"{stats['total']:,}",
        "by_workers": f" by {count} worker{'s' if count > 1 else ''}",
        "bar": 100 * done / stats["total"],
        "section_hidden": False,
        "section_shown": True,
        "rows": rows,
        "markup": 0,
    }


def _as_compared(shown: dict[str, Any]) -> dict[str, Any]:
    """The page's view as :func:`_real_job_view` has it: the bar a number (rounded as CSS
    keeps it), each row without its heartbeat, which must read ``Ns ago`` (or minutes)."""
    rows = []
    for row in shown["rows"]:
        assert re.fullmatch(r"(\d+m )?\d+s ago", row[-1]), row
        rows.append(row[:-1])
    bar = shown["bar"]
    return {
        **{key: value for key, value in shown.items() if key not in ("eta", "rows", "bar")},
        "rows": sorted(rows),
        "bar": round(float(bar[:-1]), 2) if bar.endswith("%") else bar,
    }


async def test_the_page_shows_a_real_shared_job_on_postgres(
    browser: Browser, artifacts: Path, owners: OwnersServer, pg_dsn: str, tmp_path: Path,
    spawn: Spawn,
) -> None:  # fmt: skip
    """Two worker processes on one PostgreSQL job, the first with a dashboard: paused from
    it (so the figures hold still), the page shows the whole job and both workers as the
    job's database has them; resumed, the job completes, every request once."""
    urls = write_urls(tmp_path / "urls.txt", owners, hosts=4, each=30, delay_s=0.1)
    first = await spawn(*creator(tmp_path / "urls.txt", pg_dsn, owners, "--dashboard", "0"))
    base = await _dashboard_url(first)
    job, other = await join_made(spawn, pg_dsn, owners)
    await wait_sending(owners, 0, 1)
    async with aiohttp.ClientSession() as http:
        assert (await _post(http, base + "api/pause"))["paused"]
        await wait_quiet(owners)
        recorded = len(await job.records())
        assert 0 < recorded < len(urls)  # paused mid-job
        async with browse(browser, base) as browsing:
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # the page and api/stats agree once both saw the same snapshot
                expected = await _real_job_view(http, base)
                shown = _as_compared(await browsing.page.evaluate(READ_JOB))
                if shown == {**expected, "bar": round(expected["bar"], 2)}:
                    break
                assert asyncio.get_running_loop().time() < deadline, (shown, expected)
                await asyncio.sleep(0.1)
            # What the page shows is the job's database: its records, both processes.
            assert shown["done"] == f"{recorded:,}" and shown["total"] == f"{len(urls):,}"
            assert shown["by_workers"] == " by 2 workers"
            assert {int(row[2]) for row in shown["rows"]} == {first.pid, other.pid}
            assert sum(int(row[4].replace(",", "")) for row in shown["rows"]) == recorded
            assert await browsing.page.is_visible("#workers_section")
            assert await browsing.state() == "paused"
            await browsing.screenshot(artifacts, "dashboard-real-shared-job.png")
            browsing.check()
        assert not (await _post(http, base + "api/resume"))["paused"]
    done = [await finish(first, within_s=60), await finish(other, within_s=60)]
    assert [d.code for d in done] == [0, 0], [d.stderr for d in done]
    check_once(await job.records(), urls)
    check_server(owners, cap=2)
