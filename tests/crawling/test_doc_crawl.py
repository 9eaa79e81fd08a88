"""``shoal crawl`` against a real documentation tree (Flask's, as Debian installs it) served
by nginx: it finds exactly the pages wget2's recursive mode finds, each fetched once — also
when killed with SIGKILL at random moments and resumed."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tests.command import Finished, finish, start
from tests.conftest import killed_after
from tests.crawling.doc_site import (
    DOC_SEED,
    doc_site,  # noqa: F401 (the fixture)
    reference_crawl,
)
from tests.helpers import read_records
from tests.nginx_server import NginxSite


def served_since(site: NginxSite, start_at: int) -> Counter[str]:
    site.sync_log()
    return Counter(
        f"http://127.0.0.1:{site.port}{request.path}"
        for request in site.requests()[start_at:]
        if request.method == "GET"
    )


def ok_urls(output: Path) -> list[str]:
    return [record["url"] for record in read_records(output) if record["status"] == 200]


def assert_answered(done: Finished, output: Path) -> None:
    """Exit 0, not 1: the tree's broken link (a 404) is an answer, not a failure, as
    without ``--fail`` every HTTP status is; a failure would be a request left without one.
    The records show it so: every page not a 200 was answered 403 or 404, with no error."""
    assert done.code == 0, (done.code, done.stderr)
    others = [record for record in read_records(output) if record["status"] != 200]
    assert others, "the tree's broken link was not recorded"
    assert all(r["status"] in (403, 404) and r["error"] is None for r in others), others


@pytest.mark.parametrize("assets", [False, True], ids=["pages", "assets"])
async def test_the_crawl_finds_what_wget2_finds_each_once(
    doc_site: NginxSite,  # noqa: F811
    tmp_path: Path,
    assets: bool,
) -> None:
    reference = reference_crawl(doc_site, DOC_SEED, assets=assets)
    doc_site.sync_log()
    mark = len(doc_site.requests())
    output = tmp_path / "out.jsonl"
    args = ["crawl", doc_site.url.rstrip("/") + DOC_SEED, "-o", str(output), "-q"]
    done = await finish(await start(*args, *(["--assets"] if assets else [])), within_s=120)
    assert_answered(done, output)
    found = ok_urls(output)
    assert len(found) == len(set(found))
    assert set(found) == reference
    served = served_since(doc_site, mark)
    assert all(count == 1 for count in served.values()), served.most_common(3)


async def test_killed_at_random_moments_and_resumed_the_crawl_finds_the_same_set(
    doc_site: NginxSite,  # noqa: F811
    tmp_path: Path,
) -> None:
    reference = reference_crawl(doc_site, DOC_SEED, assets=False)
    output = tmp_path / "out.jsonl"
    # Paced, so that the crawl lasts a couple of seconds and the kills land inside it.
    seed = doc_site.url.rstrip("/") + DOC_SEED
    args = ("crawl", seed, "-o", str(output), "-q", "--per-host-rate", "40/s", "--progress", "off")
    rng = random.Random(7)
    kills = 0
    for _ in range(6):
        if not await killed_after(await start(*args), rng.uniform(0.3, 1.2)):
            break
        kills += 1
    done = await finish(await start(*args), within_s=120)
    assert_answered(done, output)
    assert kills >= 2
    found = ok_urls(output)
    assert len(found) == len(set(found))  # each page recorded once, kills or not
    assert set(found) == reference
