"""``shoal crawl`` on the command line: a generated site, options, usage errors, and kill -9
at random moments with the frontier in the journal."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import random
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from yarl import URL

from tests.command import RESOLVE, finish, shoal, start
from tests.helpers import read_records, wait_until
from tests.site_server import TreeSite, serving


@pytest.fixture
async def site() -> AsyncIterator[TreeSite]:
    async with serving(pages=400, fanout=5, delay_s=0.004) as tree:
        yield tree


async def test_crawl_finds_every_page_once(site: TreeSite, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    done = await finish(await start("crawl", site.url(0), "-o", str(output), *RESOLVE), within_s=60)
    assert done.code == 0, done.stderr
    records = read_records(output)
    assert sorted(r["url"] for r in records) == sorted(site.url(n) for n in range(site.pages))
    assert all(count == 1 for count in site.served.values())
    by_url = {r["url"]: r for r in records}
    assert by_url[site.url(7)]["depth"] == 2
    assert by_url[site.url(7)]["parent"] == site.url(1)
    assert "links" in done.stderr and f"{site.pages - 1:,} new" in done.stderr
    exported = await shoal("export", str(output), "--format", "csv")
    rows = {row["url"]: row for row in csv.DictReader(io.StringIO(exported.stdout.decode()))}
    assert (rows[site.url(7)]["depth"], rows[site.url(7)]["parent"]) == ("2", site.url(1))
    assert (rows[site.url(0)]["depth"], rows[site.url(0)]["parent"]) == ("0", "")


async def test_crawl_options_bound_and_shape_the_crawl(site: TreeSite, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    args = ("crawl", site.url(0), "-o", str(output), "--max-depth", "2", "--scope", "all")
    done = await finish(await start(*args, "--exclude", r"/p/3$", *RESOLVE), within_s=60)
    assert done.code == 0, done.stderr
    urls = {r["url"] for r in read_records(output)}
    ours = {u for u in urls if "//site.test" in u}
    # Depth 2 is pages 0 to 30; /p/3 is left out, and with it its children (16 to 20).
    assert ours == {site.url(n) for n in range(31)} - {site.url(n) for n in (3, *site.children(3))}
    assert site.url(0, host="other.test") in urls  # --scope all leaves the host
    output.unlink()
    budget = ("crawl", site.url(0), "-o", str(output), "--max-requests", "25", "--restart")
    done = await finish(await start(*budget, *RESOLVE), within_s=60)
    assert done.code == 0, done.stderr
    assert len(read_records(output)) == 25


async def test_seeds_from_a_file(site: TreeSite, tmp_path: Path) -> None:
    seeds, output = tmp_path / "seeds.txt", tmp_path / "out.jsonl"
    seeds.write_text(f"{site.url(1)}\n{site.url(2)}\n")
    args = ("crawl", "--seeds", str(seeds), "-o", str(output), "--max-depth", "1")
    done = await finish(await start(*args, *RESOLVE), within_s=60)
    assert done.code == 0, done.stderr
    urls = {r["url"] for r in read_records(output)}
    assert urls == {site.url(n) for n in (1, 2, *site.children(1), *site.children(2), 0)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give the seeds as arguments or with --seeds FILE"),
        (("http://a.test/", "--seeds", "x.txt"), "give the seeds as arguments"),
        (("http://a.test/", "--scope", "galaxy"), "--scope"),
        (("http://a.test/", "--max-depth", "-1"), "--max-depth"),
        (("http://a.test/", "--include", "(unclosed"), "--include"),
        (("http://a.test/", "--processes", "2", "--scope", "all"), "needs --scope same-host"),
        (("http://a.test/", "--processes", "3", "--max-requests", "2"), "cannot be shared"),
    ],
)
async def test_bad_crawl_options_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    done = await shoal("crawl", *args)
    assert done.code == 2
    assert message in done.stderr


async def test_a_crawl_in_processes_gives_each_host_to_one_and_each_page_once(
    site: TreeSite, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    hosts = ("a.test", "b.test", "c.test", "d.test")
    seeds = [site.url(0, host) for host in hosts]
    args = ("crawl", *seeds, "-o", str(output), "--processes", "2", "-c", "8", "-q")
    done = await finish(await start(*args, *RESOLVE), within_s=60)
    assert done.code == 0, done.stderr
    urls = [record["url"] for record in read_records(output)]
    assert sorted(urls) == sorted(site.url(n, host) for n in range(site.pages) for host in hosts)
    assert all(count == len(hosts) for count in site.served.values())  # once per host
    # Each host's pages, links found by its pages included, are all one process's.
    parts = [_final_urls(Path(f"{output}.journal.{n}-of-2")) for n in (1, 2)]
    owners = [{URL(url).host for url in part} for part in parts]
    assert owners[0].isdisjoint(owners[1]) and owners[0] | owners[1] == set(hosts)
    assert all(owners)  # four hosts: both processes had some (with this hash, for these names)


async def test_a_crawls_budget_is_shared_by_its_processes(site: TreeSite, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    seeds = [site.url(0, host) for host in ("a.test", "b.test", "c.test", "d.test")]
    args = ("crawl", *seeds, "-o", str(output), "--processes", "2", "--max-requests", "30")
    done = await finish(await start(*args, "-q", *RESOLVE), within_s=60)
    assert done.code == 0, done.stderr
    parts = [len(_final_urls(Path(f"{output}.journal.{n}-of-2"))) for n in (1, 2)]
    assert parts == [15, 15]  # an exact part each: never past the budget in all
    assert len(read_records(output)) == 30


def _final_urls(journal: Path) -> set[str]:
    """The URLs the journal holds final records of (read-only, as a kill left it)."""
    if not journal.exists():
        return set()
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT record FROM records").fetchall()
    except sqlite3.OperationalError:
        return set()  # killed before the tables were made
    finally:
        db.close()
    import orjson

    return {orjson.loads(row[0])["url"] for row in rows}


def _progressed(
    process: asyncio.subprocess.Process, journal: Path, count: int
) -> Callable[[], bool]:
    """Whether the journal holds ``count`` final pages, or the process has ended."""
    return lambda: process.returncode is not None or len(_final_urls(journal)) >= count


async def test_killed_at_random_moments_the_crawl_resumes_each_page_once(
    site: TreeSite, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    journal = tmp_path / "out.jsonl.journal"
    args = ("crawl", site.url(0), "-o", str(output), "-c", "8", "--progress", "off", *RESOLVE)
    rng = random.Random(20261203)
    kills = 0
    #: Pages final in the journal at a kill, with how often the site had served each then.
    final_at_kill: dict[str, int] = {}
    finals_per_kill = []
    site.delay_s = 0.05  # about 2.5 s of crawling in all, so the kills land inside it
    for round_number in range(8):
        before = len(_final_urls(journal))
        process = await start(*args)
        try:
            if round_number % 2:  # at a random moment, start-up included
                await asyncio.wait_for(process.wait(), rng.uniform(0.15, 0.9))
            else:  # mid-crawl: once this run has committed some pages
                await wait_until(_progressed(process, journal, before + 15), 20, "pages")
                await asyncio.wait_for(process.wait(), rng.uniform(0.0, 0.3))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):  # it may just have ended
                process.kill()
            await process.wait()
        if process.returncode != -signal.SIGKILL:
            break
        kills += 1
        finals = _final_urls(journal)
        finals_per_kill.append(len(finals))
        for url in finals:
            final_at_kill.setdefault(url, site.served[URL(url).path])
    done = await finish(await start(*args), within_s=60)
    assert done.code == 0, done.stderr
    assert kills >= 3
    assert any(0 < count < site.pages for count in finals_per_kill), finals_per_kill
    records = read_records(output)
    urls = [r["url"] for r in records]
    assert len(urls) == len(set(urls)) == site.pages  # each page once: none lost, none twice
    assert set(urls) == {site.url(n) for n in range(site.pages)}
    # A page final in the journal was never fetched again by a later run.
    for url, served in final_at_kill.items():
        assert site.served[URL(url).path] == served >= 1, url
    assert len(_final_urls(journal)) == site.pages


async def test_a_crawl_archives_every_page_it_records(site: TreeSite, tmp_path: Path) -> None:
    output, prefix = tmp_path / "out.jsonl", tmp_path / "archive" / "site"
    args = ("crawl", site.url(0), "-o", str(output), "--max-depth", "2", "--warc", str(prefix))
    done = await finish(await start(*args, *RESOLVE), within_s=60)
    assert done.code == 0, done.stderr
    records = read_records(output)
    assert len(records) == 31 and all(record["warc"] is not None for record in records)
    index = (tmp_path / "archive" / "site.cdxj").read_text().splitlines()
    assert len([line for line in index if '"status":"200"' in line]) == 31


async def test_a_larger_max_depth_extends_a_finished_crawl(site: TreeSite, tmp_path: Path) -> None:
    output = tmp_path / "crawl.jsonl"
    args = ("crawl", site.url(0), "-o", str(output), *RESOLVE, "--progress", "off")
    first = await shoal(*args, "--max-depth", "1", within_s=60)
    assert first.code == 0, first.stderr
    assert len(read_records(output)) == 6  # the seed and its five children
    deeper = await shoal(*args, "--max-depth", "2", within_s=60)
    assert deeper.code == 0, deeper.stderr
    assert "went to depth 1 before: its 5 pages at that depth are fetched again" in deeper.stderr
    records = read_records(output)
    urls = [record["url"] for record in records]
    assert sorted(urls) == sorted(site.url(n) for n in range(31))  # each page once
    depths = {record["url"]: record["depth"] for record in records}
    assert all(depths[site.url(n)] == site.depth(n) for n in range(31))
    # The pages at the old depth were fetched again for their links (not kept); no other.
    assert [site.served[URL(site.url(n)).path] for n in range(6)] == [1, 2, 2, 2, 2, 2]
    assert all(site.served[URL(site.url(n)).path] == 1 for n in range(6, 31))
    again = await shoal(*args, "--max-depth", "2", within_s=60)  # nothing more to do
    assert again.code == 0 and "0 this run" in again.stderr and "went to" not in again.stderr
    assert len(read_records(output)) == 31
