"""A crawl's memory stays flat while its frontier grows to a million links.

A generated site whose pages each link to a thousand new pages (made on the fly) is crawled
by ``shoal crawl`` in a subprocess, its budget a million requests. The crawl's peak
resident memory once 200,000 links are admitted and once a million are must be nearly the
same: the frontier is in the journal, and the links waiting for their commit are bounded.
(Holding the links in memory costs some 300 bytes each: 240 MB more at a million.)
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.command import RESOLVE, start
from tests.site_server import TreeSite

LINKS = 1_000_000
EARLY = 200_000
#: Growth allowed from the early mark to the end: the journal's caches, the allocator.
ALLOWED_GROWTH_MIB = 40


@pytest.fixture
async def wide_site() -> AsyncIterator[TreeSite]:
    site = TreeSite(pages=10**9, fanout=1000)
    await site.start()
    try:
        yield site
    finally:
        await site.stop()


def admitted(journal: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE name = 'admitted'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not made yet, or busy for a moment
    return 0 if row is None else int(row[0])


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


async def test_peak_memory_is_flat_as_the_frontier_grows_to_a_million_links(
    wide_site: TreeSite, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    journal = tmp_path / "out.jsonl.journal"
    args = ("crawl", wide_site.url(0), "-o", str(output), "--max-requests", str(LINKS))
    process = await start(*args, "--progress", "off", "-q", *RESOLVE)
    early: float | None = None
    deadline = time.monotonic() + 600
    try:
        while (count := admitted(journal)) < LINKS:
            assert process.returncode is None, "the crawl ended early"
            assert time.monotonic() < deadline, f"only {count:,} links admitted in 600 s"
            if early is None and count >= EARLY:
                early = peak_rss_mib(process.pid)
            await asyncio.sleep(0.1)
        late = peak_rss_mib(process.pid)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await process.communicate()
    assert early is not None
    print(f"peak RSS: {early:.0f} MiB at {EARLY:,} links, {late:.0f} MiB at {LINKS:,}")
    assert late - early < ALLOWED_GROWTH_MIB, (early, late)
    assert process.returncode == 130  # stopped: resumable, the frontier in the journal
    assert len(wide_site.served) < 2000  # the links were found, not fetched
