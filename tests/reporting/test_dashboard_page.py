"""The dashboard page in real headless Chromium against a real run (issue 13).

Debian's ``chromium`` driven by Playwright for Python (``executable_path``, never a
downloaded browser). The numbers the page shows match the run's ``statistics()``; its
Pause button stops new requests (asserted at the test server), Resume starts them again and
Stop ends the run resumable, and the same job run again completes the rest exactly once.
A shared job's snapshot (its workers) shows the whole job's progress and a table of
its workers, their names escaped; without workers the page is the run's own.
The page asks nothing of any origin but the dashboard's own and logs no errors. A
screenshot of each test's page is kept: in ``$SHOAL_ARTIFACTS`` when set, else the test's
``tmp_path``.

Without ``/usr/bin/chromium`` (or Playwright) the tests skip, unless
``SHOAL_REQUIRE_BROWSER=1`` (CI sets it), when they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shoal import Engine, Limits, Network, RetryPolicy, Statistics
from shoal.latency import Latency
from shoal.reporting.dashboard import TOP_HOSTS, Dashboard
from shoal.scheduling import HostState
from shoal.store import WorkerState
from tests.conftest import resolver
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving
from tests.site_server import TreeSite, follow_links

try:
    from playwright.async_api import async_playwright
except ImportError:  # the browser tests skip (or fail, in CI) below
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page
    from playwright.async_api import Error as PageError
    from playwright.async_api import Request as PageRequest

CHROMIUM = "/usr/bin/chromium"
#: Longest wait for the page to show a snapshot: it is sent one every second.
PAGE_WAIT_S = 4.0


def _unavailable() -> str | None:
    if not HAVE_PLAYWRIGHT:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no browser at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("SHOAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and SHOAL_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, timeout=10_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: ``$SHOAL_ARTIFACTS`` when set, else the test's tmp_path."""
    where = Path(os.environ.get("SHOAL_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


@dataclass
class Browsing:
    """One page on the dashboard, and what it asked for and complained of."""

    page: Page
    base: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Every request went to the dashboard's own origin, and nothing went wrong."""
        assert self.requests, "the page made no request at all (were they observed?)"
        elsewhere = [url for url in self.requests if not url.startswith(self.base)]
        assert not elsewhere, f"the page asked other origins: {elsewhere}"
        for path in ("/static/uPlot.iife.min.js", "/static/dashboard.js", "/api/events"):
            assert self.base + path in self.requests, f"the page never loaded {path}"
        assert not self.errors, f"the page reported errors: {self.errors}"

    async def state(self) -> str:
        return await self.page.inner_text("#state")

    async def wait_for_state(self, wanted: str) -> None:
        deadline = asyncio.get_running_loop().time() + PAGE_WAIT_S
        while (shown := await self.state()) != wanted:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the page shows {shown!r}, not {wanted!r}")
            await asyncio.sleep(0.05)

    async def screenshot(self, where: Path, name: str) -> Path:
        path = where / name
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"dashboard screenshot: {path}")
        assert path.stat().st_size > 10_000  # an image of a page, not an empty one
        return path


@contextlib.asynccontextmanager
async def browse(browser: Browser, dashboard: Dashboard | str) -> AsyncIterator[Browsing]:
    """The dashboard's page (of ``dashboard``, or at the URL a process gave), once its first
    snapshot arrived; closed before the dashboard, so the end of its event stream is not an
    error."""
    url = dashboard if isinstance(dashboard, str) else dashboard.url
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    browsing = Browsing(page, url.rstrip("/"))

    def on_request(request: PageRequest) -> None:
        browsing.requests.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            browsing.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def on_page_error(error: PageError) -> None:
        browsing.errors.append(f"uncaught: {error}")

    page.on("request", on_request)
    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    try:
        await page.goto(url, timeout=5_000)
        # "connecting…" until the first snapshot
        await page.wait_for_function(
            "document.body.dataset.done !== undefined", timeout=PAGE_WAIT_S * 1000
        )
        yield browsing
    finally:
        await context.close()


# -- what the page shows, and what it should show ----------------------------------------------

#: The page's numbers and tables, as text, read in one go.
READ_PAGE = """() => {
  const text = (id) => document.getElementById(id).textContent;
  const rows = (id) => Object.fromEntries(Array.from(
    document.querySelectorAll(`#${id} td[data-name]`), (td) => [td.dataset.name, td.textContent]));
  const counts = {};
  for (const id of ["done", "ok", "failed", "in_flight", "queued", "waiting_retry", "retries",
                    "total"]) counts[id] = text(id);
  return {
    counts: counts,
    latency: Object.fromEntries(["p50", "p90", "p99", "pmax"].map((id) => [id, text(id)])),
    statuses: rows("statuses"),
    errors: rows("errors"),
    hosts: Array.from(document.querySelectorAll("#hosts tbody tr td:first-child"),
                      (td) => td.textContent).sort(),
    recent: Array.from(document.querySelectorAll("#recent tbody tr"), (tr) => {
      const cells = tr.querySelectorAll("td");
      return cells.length === 4 ? [cells[0].textContent, cells[2].textContent,
                                   cells[3].textContent] : null;
    }).filter((row) => row !== null),
  };
}"""


def _count(n: int) -> str:
    return f"{n:,}"  # the page's toLocaleString("en")


def expected_view(stats: Statistics, busiest_hosts: tuple[Any, ...]) -> dict[str, Any]:
    """What the page should show of ``stats``, in the page's own formats."""
    counts = {
        name: _count(getattr(stats, name))
        for name in ("done", "ok", "failed", "in_flight", "queued", "waiting_retry", "retries")
    }
    if stats.total is None:
        counts["total"] = "?"
    else:
        counts["total"] = _count(stats.total) + (" (estimate)" if stats.total_is_estimate else "")
    latency = stats.latency
    return {
        "counts": counts,
        "latency": {
            "p50": latency.p50_ms,
            "p90": latency.p90_ms,
            "p99": latency.p99_ms,
            "pmax": latency.max_ms,
        },
        "statuses": {name: _count(n) for name, n in stats.by_status.items()},
        "errors": {name: _count(n) for name, n in stats.by_error.items()},
        "hosts": sorted({host.host for host in (*stats.hosts, *busiest_hosts)}),
        "recent": [[e.kind, e.url, e.message] for e in stats.recent_errors],
    }


def _milliseconds(shown: str) -> float | None:
    return None if shown == "—" else float(shown.removesuffix(" ms"))


def agrees(shown: dict[str, Any], expected: dict[str, Any]) -> bool:
    for key in ("counts", "statuses", "errors", "hosts", "recent"):
        if shown[key] != expected[key]:
            return False
    for name, wanted in expected["latency"].items():
        got = _milliseconds(shown["latency"][name])
        if (got is None) != (wanted is None):
            return False
        if got is not None and abs(got - wanted) > 0.051:  # shown to 0.1 ms
            return False
    return True


def _rounded(view: dict[str, Any]) -> dict[str, Any]:
    """``view`` with its latencies as the page rounds them, for a readable difference."""
    latency = {
        name: value if value is None or isinstance(value, float) else _milliseconds(value)
        for name, value in view["latency"].items()
    }
    return {**view, "latency": {n: None if v is None else round(v, 1) for n, v in latency.items()}}


async def page_agrees_with(browsing: Browsing, engine: Engine) -> dict[str, Any]:
    """Wait (bounded) until the page shows what ``engine.statistics()`` says; the view."""
    deadline = asyncio.get_running_loop().time() + PAGE_WAIT_S
    while True:
        expected = expected_view(engine.statistics(), engine.busiest_hosts(TOP_HOSTS))
        shown = await browsing.page.evaluate(READ_PAGE)
        if agrees(shown, expected):
            return expected
        if asyncio.get_running_loop().time() > deadline:
            assert _rounded(shown) == _rounded(expected), "the page never showed statistics()"
        await asyncio.sleep(0.1)


async def settled(engine: Engine, within_s: float = 5.0) -> Statistics:
    """Once paused, wait for the requests in flight to end and the numbers to stop moving."""
    assert engine.paused
    previous: Statistics | None = None
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        stats = engine.statistics()
        frozen = previous is not None and _moving(previous) == _moving(stats)
        if frozen and stats.in_flight == 0:
            return stats
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the paused run never settled: {stats}")
        previous = stats
        await asyncio.sleep(0.1)


def _moving(stats: Statistics) -> tuple[Any, ...]:
    return (stats.done, stats.retries, stats.in_flight, stats.queued, stats.waiting_retry)


def requests_per_host(urls: list[str], server: Misbehaving) -> set[int]:
    """How many times the server saw each URL's host (one host per URL): ``{1}`` is once."""
    hosts = [url.split("//", 1)[1].split(":", 1)[0] for url in urls]
    return {server.log.hosts[host].requests for host in hosts}


# -- the tests ---------------------------------------------------------------------------------


async def test_the_page_shows_the_runs_statistics(
    server: Misbehaving, browser: Browser, artifacts: Path
) -> None:
    # A mix, so every table has rows: ok, 404, 503s that recover on retry, 503s that do
    # not, broken responses (error kinds), and slow ones that keep the run going.
    urls = [server.url(f"/ok?size={n}", host=f"h{n % 3}.test") for n in range(1, 41)]
    urls += [server.url(f"/status/404?n={n}", host="h0.test") for n in range(5)]
    urls += [server.url(f"/flaky/page{n}?fail=1", host="h1.test") for n in range(4)]
    urls += [server.url(f"/status/503?n={n}", host="h2.test") for n in range(2)]
    urls += [server.url(f"/drop?n={n}", host="h3.test") for n in range(2)]
    urls += [server.url(f"/bad-status?n={n}", host="h3.test") for n in range(2)]
    urls += [server.url(f"/delay?s=0.1&n={n}", host=f"slow{n % 4}.test") for n in range(40)]
    engine = Engine(
        limits=Limits(concurrency=4, per_host=4),
        retry=RetryPolicy(retries=1, backoff_base_s=0.01, backoff_max_s=0.02),
        network=Network(resolver=resolver()),
    )
    async with engine, Dashboard(engine) as dashboard, browse(browser, dashboard) as browsing:
        run = asyncio.create_task(engine.run(urls))
        try:
            await wait_until(lambda: engine.statistics().done >= 60, 5, "60 results")
            engine.pause()
            paused = await settled(engine)
            assert 0 < paused.done < len(urls) and paused.in_flight == 0
            view = await page_agrees_with(browsing, engine)
            assert engine.statistics().done == paused.done  # still frozen: a fair match
            assert view["statuses"] and view["errors"] and view["recent"] and view["hosts"]
            await browsing.wait_for_state("paused")
            await browsing.screenshot(artifacts, "dashboard-paused.png")
            engine.resume()
            finished = await asyncio.wait_for(run, 10)
        finally:
            if not run.done():  # (a stop after the end would mark the finished run stopped)
                engine.stop()
                await asyncio.wait([run], timeout=5)
        # Finished: the last snapshot is final, and the page shows it too.
        view = await page_agrees_with(browsing, engine)
        assert finished.done == len(urls) == finished.total and not finished.interrupted
        assert view["counts"]["done"] == _count(len(urls))
        await browsing.wait_for_state("finished")
        assert finished.finished
        assert finished.by_error and finished.retries >= 4 + 2  # the flaky and the 503s
        await browsing.screenshot(artifacts, "dashboard-finished.png")
        browsing.check()


async def test_pause_resume_and_stop_from_the_page(
    server: Misbehaving, browser: Browser, artifacts: Path, tmp_path: Path
) -> None:
    # One host per URL, so the server's per-host count is a per-request count.
    urls = [server.url(f"/delay?s=0.05&n={n}", host=f"p{n}.test") for n in range(200)]
    journal, output = str(tmp_path / "job.journal"), tmp_path / "out.jsonl"
    limits = Limits(concurrency=4, per_host=4)
    engine = Engine(limits=limits, network=Network(resolver=resolver()))
    async with engine, Dashboard(engine) as dashboard, browse(browser, dashboard) as browsing:
        run = asyncio.create_task(engine.run(urls, journal=journal, output=str(output)))
        try:
            await wait_until(lambda: server.log.total >= 12, 5, "requests at the server")
            await browsing.page.click("#pause")
            await wait_until(lambda: engine.paused, 3, "the pause to reach the engine")
            # The requests in flight end; then none arrives, though the job has work left.
            await wait_until(lambda: server.log.in_flight == 0, 3, "the in-flight to end")
            await wait_until(lambda: engine.statistics().in_flight == 0, 3, "no in flight")
            arrived = server.log.total
            await asyncio.sleep(0.8)
            assert server.log.total == arrived, "requests reached the server while paused"
            stats = engine.statistics()
            assert stats.paused and stats.remaining is not None and stats.remaining > 0
            assert stats.done < len(urls) and not run.done()
            await browsing.wait_for_state("paused")
            await browsing.screenshot(artifacts, "dashboard-controls-paused.png")

            await browsing.page.click("#resume")
            await wait_until(lambda: server.log.total > arrived, 3, "requests after resume")
            assert not engine.paused
            await browsing.wait_for_state("running")

            resumed_at = server.log.total
            await browsing.page.click("#stop")
            stopped = await asyncio.wait_for(run, 5)
        finally:
            if not run.done():  # (a stop after the end would mark the finished run stopped)
                engine.stop()
                await asyncio.wait([run], timeout=5)
        assert stopped.interrupted and not stopped.paused
        assert resumed_at <= stopped.done < len(urls)
        assert server.log.total == stopped.done  # what was sent finished and was counted
        await browsing.wait_for_state("stopped")  # ended by the stop: resumable
        await page_agrees_with(browsing, engine)
        browsing.check()
    assert len(read_records(output)) == stopped.done  # the output agrees with the journal

    async with Engine(limits=limits, network=Network(resolver=resolver())) as again:
        rest = await asyncio.wait_for(again.run(urls, journal=journal, output=str(output)), 10)
    assert not rest.interrupted
    assert rest.skipped == stopped.done and rest.done == len(urls) - stopped.done
    assert rest.job_ok == len(urls)
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    assert requests_per_host(urls, server) == {1}  # every request was sent exactly once


async def _shows(browsing: Browsing, wanted: dict[str, str]) -> dict[str, str]:
    """Wait (bounded) until each element (by id) shows its text and is visible."""
    deadline = asyncio.get_running_loop().time() + PAGE_WAIT_S
    while True:
        shown = {
            name: await browsing.page.inner_text(f"#{name}")
            if await browsing.page.is_visible(f"#{name}")
            else "(hidden)"
            for name in wanted
        }
        if shown == wanted or asyncio.get_running_loop().time() > deadline:
            return shown
        await asyncio.sleep(0.05)


async def test_a_crawl_shows_its_links_and_a_map_its_items(browser: Browser) -> None:
    site = TreeSite(pages=60, fanout=3)
    await site.start()
    try:
        engine = Engine(
            limits=Limits(concurrency=4), network=Network(resolver=resolver()), handler=follow_links
        )
        async with engine, Dashboard(engine) as dashboard, browse(browser, dashboard) as page:
            stats = await engine.run([site.url(0)])
            links = stats.links
            assert links.found > links.admitted == site.pages - 1
            shown = await _shows(
                page,
                {
                    "links_found": _count(links.found),
                    "links_admitted": _count(links.admitted),
                    "links_left_out": _count(links.found - links.admitted),
                    "rate_unit": "requests/s",
                },
            )
            assert shown["links_found"] == _count(links.found), shown
            assert shown["links_admitted"] == _count(links.admitted), shown
            assert shown["links_left_out"] == _count(links.found - links.admitted), shown
            assert shown["rate_unit"] == "requests/s"
            page.check()
    finally:
        await site.stop()

    async def work(item: int) -> int:
        await asyncio.sleep(0.001)
        return item

    engine = Engine(limits=Limits(concurrency=4))
    async with engine, Dashboard(engine) as dashboard, browse(browser, dashboard) as page:
        async with engine.map(work, range(50)) as outcomes:
            assert len([outcome async for outcome in outcomes]) == 50
        shown = await _shows(page, {"rate_unit": "items/s", "bytes_rate": "(hidden)"})
        assert shown == {"rate_unit": "items/s", "bytes_rate": "(hidden)"}
        assert not await page.page.is_visible("#links_found")  # no crawl, no link tiles
        assert await page.page.inner_text("#rate_title") == "Items per second"
        page.check()


# -- a shared job: the whole job's progress, and its workers -----------------------------------

# A real shared job on PostgreSQL, two worker processes, is test_dashboard_shared_job.py's.
# Here a fixed snapshot shows what a real job cannot give at will: worker names with markup
# (escaped, not rendered), exact figures and ETA, and the workers leaving mid-page.

#: Three workers of one job (one named with markup, which the page must show as text), and
#: how the page shows each: name, machine, pid, hosts, ok, failed, heartbeat.
WORKERS = (
    WorkerState("alpha:101:a1", "alpha", 101, 12, 1234, 50, 0.4),
    WorkerState("<b>x</b>", "<i>beta</i>", 202, 3, 1000, 30, 75.0),
    WorkerState("gamma:303:c3", "gamma", 303, 0, 666, 20, 2.0),
)
WORKER_ROWS = [
    ["alpha:101:a1", "alpha", "101", "12", "1,234", "50", "0s ago"],
    ["<b>x</b>", "<i>beta</i>", "202", "3", "1,000", "30", "1m 15s ago"],
    ["gamma:303:c3", "gamma", "303", "0", "666", "20", "2s ago"],
]


def job_snapshot(workers: tuple[WorkerState, ...]) -> Statistics:
    """This worker's run (400 of its own done, 1,000 skipped as done before) in a job of
    5,000 that its workers have done 3,000 of; numbers where this run's view and the whole
    job's differ in every figure tested."""
    return Statistics(
        elapsed_s=10.0,
        total=5000,
        total_is_estimate=False,
        done=400,
        ok=390,
        failed=10,
        skipped=1000,
        duplicates=0,
        retries=0,
        in_flight=0,
        queued=0,
        waiting_retry=0,
        bytes=0,
        by_status={},
        by_error={},
        latency=Latency(),
        job_ok=2900,
        job_failed=100,
        interrupted=False,
        workers=workers,
    )


@dataclass
class Fixed:
    """A :class:`shoal.reporting.dashboard.Controlled` that shows a given snapshot."""

    stats: Statistics
    actions: list[str] = field(default_factory=list)

    def statistics(self) -> Statistics:
        return self.stats

    def busiest_hosts(self, limit: int = TOP_HOSTS) -> tuple[HostState, ...]:
        return ()

    def pause(self) -> None:
        self.actions.append("pause")

    def resume(self) -> None:
        self.actions.append("resume")

    def stop(self) -> None:
        self.actions.append("stop")


#: The progress line, the bar and the workers' table as the page has them.
READ_JOB = """() => {
  const text = (id) => document.getElementById(id).textContent;
  const section = document.getElementById("workers_section");
  return {
    done: text("done"),
    total: text("total"),
    by_workers: text("by_workers"),
    eta: text("eta"),
    bar: document.getElementById("bar-fill").style.width,
    section_hidden: section.hidden,
    section_shown: section.offsetParent !== null,
    rows: Array.from(document.querySelectorAll("#workers tbody tr"),
                     (tr) => Array.from(tr.querySelectorAll("td"), (td) => td.textContent)),
    markup: document.querySelectorAll("#workers tbody b, #workers tbody i").length,
  };
}"""

#: What the page shows of the whole shared job: 3,000 of 5,000 done (60 %) by three
#: workers, at the job's pace since this run began ((3,000 - 1,000) / 10 s): 10 s to go.
SHARED_VIEW = {
    "done": "3,000",
    "total": "5,000",
    "by_workers": " by 3 workers",
    "eta": "10s",
    "bar": "60%",
    "section_hidden": False,
    "section_shown": True,
    "rows": WORKER_ROWS,
    "markup": 0,
}
#: What the page shows of a run alone: its own 400 done of the 4,000 it had to do (10 %),
#: at its own pace (40/s): 3,600 left take 1m 30s.
ALONE_VIEW = {
    "done": "400",
    "total": "5,000",
    "by_workers": "",
    "eta": "1m 30s",
    "bar": "10%",
    "section_hidden": True,
    "section_shown": False,
    "rows": [],
    "markup": 0,
}


async def page_shows(browsing: Browsing, wanted: dict[str, Any]) -> dict[str, Any]:
    """Wait (bounded: a snapshot comes every second) until the page shows ``wanted``."""
    deadline = asyncio.get_running_loop().time() + PAGE_WAIT_S
    while True:
        shown: dict[str, Any] = await browsing.page.evaluate(READ_JOB)
        if shown == wanted or asyncio.get_running_loop().time() > deadline:
            return shown
        await asyncio.sleep(0.05)


def test_a_shared_jobs_remaining_and_eta_are_the_jobs() -> None:
    alone, shared = job_snapshot(()), job_snapshot(WORKERS)
    # A run alone: what it has not skipped nor done, at its own pace (400 in 10 s).
    assert (alone.remaining, alone.eta_s) == (5000 - 1000 - 400, 3600 / 40)
    # A shared job: what no worker has finished, at the job's pace since this run began
    # (what the job finished beyond what it had when this run began: 3,000 - 1,000).
    assert (shared.remaining, shared.eta_s) == (5000 - 3000, 2000 / 200)
    assert replace(shared, total=None).remaining is None
    assert replace(shared, job_ok=6000).remaining == 0


async def test_the_page_shows_a_shared_jobs_progress_and_workers(
    browser: Browser, artifacts: Path
) -> None:
    engine = Fixed(job_snapshot(WORKERS))
    async with Dashboard(engine) as dashboard, browse(browser, dashboard) as browsing:
        shown = await page_shows(browsing, SHARED_VIEW)
        assert shown == SHARED_VIEW
        html = await browsing.page.inner_html("#workers tbody")
        assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>" not in html  # escaped, not rendered
        assert await browsing.page.is_visible("#workers_section")
        await browsing.screenshot(artifacts, "dashboard-shared-job.png")
        # The other workers leave: the page is this run's again, the table hidden.
        engine.stats = job_snapshot(())
        assert await page_shows(browsing, ALONE_VIEW) == ALONE_VIEW
        assert not await browsing.page.is_visible("#workers_section")
        browsing.check()
    assert engine.actions == []


async def test_the_page_shows_a_run_alone_without_workers(browser: Browser) -> None:
    engine = Fixed(job_snapshot(()))
    async with Dashboard(engine) as dashboard, browse(browser, dashboard) as browsing:
        assert await page_shows(browsing, ALONE_VIEW) == ALONE_VIEW
        assert not await browsing.page.is_visible("#workers_section")
        browsing.check()


def test_the_metrics_count_a_shared_jobs_workers() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from shoal.reporting.metrics import exposition

    def gauge(stats: Statistics) -> float:
        text = exposition(lambda: stats).decode()
        families = {family.name: family for family in text_string_to_metric_families(text)}
        return float(families["shoal_job_workers"].samples[0].value)

    workers = tuple(WorkerState(f"w{n}", "m", n, 1, 0, 0, 0.5) for n in range(3))
    assert gauge(job_snapshot(workers)) == 3
    assert gauge(job_snapshot(())) == 0


# -- the charts: the run's recent past at once, from 0, in binary units ------------------------


@dataclass
class Growing(Fixed):
    """A run that finishes 100 requests of 1.5 KiB a second since it began."""

    began: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    def statistics(self) -> Statistics:
        done = int(100 * (asyncio.get_running_loop().time() - self.began))
        return replace(self.stats, done=done, ok=done, bytes=1536 * done)


#: The charts as the page has them: points, where each value axis starts, the tiles.
READ_CHARTS = """() => {
  const charts = window.shoalCharts;
  return {
    points: charts.rate.data[0].length,
    rate_from: charts.rate.scales.y.min,
    bytes_from: charts.bytes.scales.y.min,
    latency_from: charts.latency.scales.y.min,
    bytes_rate: document.getElementById("bytes_rate").textContent,
    axis: charts.bytes.axes[1].values(charts.bytes, [153600, 2097152]).join(" "),
  };
}"""


async def test_the_charts_open_with_the_runs_recent_history(browser: Browser) -> None:
    import aiohttp

    engine = Growing(job_snapshot(()))
    async with Dashboard(engine) as dashboard:
        history = dashboard.url + "api/history"
        async with aiohttp.ClientSession() as session:

            async def kept() -> int:
                async with session.get(history) as response:
                    return len((await response.json())["points"])

            deadline = asyncio.get_running_loop().time() + 10
            while (count := await kept()) < 4:  # more than an event carries
                assert asyncio.get_running_loop().time() < deadline, "no history kept"
                await asyncio.sleep(0.1)
        async with browse(browser, dashboard) as browsing:
            shown = await browsing.page.evaluate(READ_CHARTS)
            browsing.check()
    assert shown["points"] >= count, shown  # the past at once, not from now on
    assert shown["rate_from"] == shown["bytes_from"] == shown["latency_from"] == 0, shown
    assert shown["bytes_rate"].endswith(" KiB"), shown  # ~150 KiB/s, as the CLI has it
    assert shown["axis"] == "150.0 KiB/s 2.0 MiB/s", shown
