"""Follow-ups in the journal: admitted with their parent's record, deduplicated, budgeted,
and brought back with their depth and parent after a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from w3lib.url import canonicalize_url

from shoal.config import Crawl
from shoal.crawling import Frontier, LinkCounts
from shoal.job import Job
from shoal.request import Request, check_url
from shoal.result import Error
from shoal.sources.source import Position
from shoal.store import MemoryStore, SinkMark, SQLiteStore, Store
from tests.store.test_sqlite import INPUT, entries, ok_result


def found(job: Job, *urls: str, crawl: Crawl | None = None) -> Job:
    job.found = Frontier(crawl or Crawl(), LinkCounts()).entries(job, [Request(u) for u in urls])
    return job


async def admitted_pair(store: Store) -> tuple[Job, Job]:
    await store.open(INPUT)
    jobs = await store.admit(entries("http://a.test/", "http://a.test/x"), Position(2))
    return jobs[0], jobs[1]


async def test_follow_ups_commit_with_their_parent_and_duplicates_are_dropped(
    tmp_path: Path,
) -> None:
    for store in (SQLiteStore(str(tmp_path / "j")), MemoryStore()):
        root, _ = await admitted_pair(store)
        urls = ("http://a.test/1", "http://a.test/x", "http://a.test/1", "http://a.test/2")
        committed = await store.complete([(found(root, *urls), ok_result(root))], SinkMark())
        assert [job.request.url for job in committed.admitted] == list(urls[::3])
        assert [job.seq for job in committed.admitted] == [3, 4]
        assert committed.duplicate == 2  # /x is in the input; /1 twice in one page
        assert all(job.depth == 1 for job in committed.admitted)
        assert all(job.parent_url == "http://a.test/" for job in committed.admitted)
        assert store.counts.admitted == 4
        # The admission fast path still numbers input admitted after follow-ups right.
        later = await store.admit(entries("http://a.test/late", start=3), Position(3))
        assert [job.seq for job in later] == [5]
        await store.close()


async def test_the_budget_caps_the_requests_a_job_holds(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "j"))
    root, _ = await admitted_pair(store)
    urls = [f"http://a.test/{n}" for n in range(10)]
    committed = await store.complete([(found(root, *urls), ok_result(root))], SinkMark(), budget=5)
    assert len(committed.admitted) == 3 and committed.over_budget == 7
    assert store.counts.admitted == 5
    await store.close()


async def test_follow_ups_come_back_pending_with_depth_and_parent(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    store = SQLiteStore(path)
    root, _ = await admitted_pair(store)
    await store.complete([(found(root, "http://a.test/1"), ok_result(root))], SinkMark())
    await store.close()
    again = SQLiteStore(path)
    state = await again.open(INPUT)
    assert state.last_seq == 3
    pending = await again.pending(0, 10)
    assert [(j.request.url, j.depth, j.parent_url) for j in pending] == [
        ("http://a.test/x", 0, None),
        ("http://a.test/1", 1, "http://a.test/"),
    ]
    await again.defer(pending)
    taken = await again.take_deferred("a.test", 10)
    assert [(j.depth, j.parent_url) for j in taken] == [(0, None), (1, "http://a.test/")]
    await again.close()


async def test_a_journal_from_before_follow_ups_gains_their_columns(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    store = SQLiteStore(path)
    await admitted_pair(store)
    await store.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE requests DROP COLUMN depth")
    db.execute("ALTER TABLE requests DROP COLUMN parent")
    db.commit()
    db.close()
    again = SQLiteStore(path)
    await again.open(INPUT)
    assert [(j.depth, j.parent_url) for j in await again.pending(0, 10)] == [(0, None)] * 2
    await again.close()


def test_the_frontier_keys_links_by_their_canonical_form() -> None:
    counts = LinkCounts()
    frontier = Frontier(Crawl(), counts)
    parent = Job(1, Request("http://a.test/"), None, None, None, "a.test")
    one, two = frontier.entries(
        parent, [Request("http://a.test/p?b=2&a=1"), Request("http://A.test/p?a=1&b=2#frag")]
    )
    assert one.key == two.key
    assert two.request.url == "http://a.test/p?a=1&b=2"  # fetched as given, less the fragment


def test_same_host_means_the_host_name_and_its_port() -> None:
    counts = LinkCounts()
    frontier = Frontier(Crawl(), counts)
    checked = check_url("http://a.test:8000/")
    assert not isinstance(checked, Error)
    parent = Job(1, Request("http://a.test:8000/"), None, checked, None, "a.test")
    kept = frontier.entries(
        parent,
        [
            Request("http://a.test:8000/in"),
            Request("http://a.test:5000/other-port"),
            Request("http://b.test:8000/other-host"),
        ],
    )
    assert [entry.request.url for entry in kept] == ["http://a.test:8000/in"]
    assert counts.out_of_scope == 2
    plain = check_url("http://a.test/")
    assert not isinstance(plain, Error)
    page = Job(2, Request("http://a.test/"), None, plain, None, "a.test")
    secure = frontier.entries(page, [Request("https://a.test/x"), Request("https://a.test:443/y")])
    assert len(secure) == 2  # default ports: one host


@pytest.mark.parametrize(
    "url",
    [
        "http://a.test:80/p",
        "http://A.TEST/P/a b",
        "http://a.test/é",
        "http://a.test/a/./b/../c",
        "https://a.test:443/x",
        "http://a.test/~x",
        "http://[::1]:8080/x",
        "http://bücher.test/x",
        "http://a.test/p?b=&a=1",
    ],
)
def test_a_link_and_its_canonical_form_are_one_key(url: str) -> None:
    frontier = Frontier(Crawl(scope="all"), LinkCounts())
    parent = Job(1, Request("http://a.test/"), None, None, None, "a.test")
    checked = check_url(url)
    assert not isinstance(checked, Error)
    one, two = frontier.entries(parent, [Request(url), Request(canonicalize_url(str(checked)))])
    assert one.key == two.key
