"""A host with a huge backlog first in the input does not hold back the hosts after it.

The scheduler keeps at most a few dozen jobs per host in memory; the rest of a big host's
jobs wait in the store and come back as its queue drains. So the input keeps being read
past the backlog, and the small hosts behind it are served early.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import shoal
from shoal import Limits, RetryPolicy
from shoal.scheduling.scheduler import HOST_QUEUE
from tests.conftest import resolver
from tests.servers import Misbehaving

#: Twice what the scheduler would hold without deferral (~1,500): a clear contrast at 5 %.
BIG = 3_000
SMALL_HOSTS = 40


@pytest.mark.parametrize("journal", [False, True], ids=["memory", "sqlite"])
async def test_small_hosts_behind_a_huge_backlog_are_served_early(
    server: Misbehaving, tmp_path: Path, journal: bool
) -> None:
    # The big host answers in 2 ms, four at a time: the network, not the journal, sets the
    # pace, as it does away from loopback.
    urls = [server.url(f"/delay?s=0.002&n={n}", host="big.test") for n in range(BIG)]
    urls += [server.url(f"/ok?s={h}", host=f"s{h}.test") for h in range(SMALL_HOSTS)]
    engine = shoal.Engine(
        network=shoal.Network(resolver=resolver()),
        limits=Limits(concurrency=16, per_host=4),
        retry=RetryPolicy(retries=0),
    )
    async with engine:
        stats = await engine.run(urls, journal=str(tmp_path / "job.journal") if journal else None)
    assert stats.ok == BIG + SMALL_HOSTS
    big = server.log.hosts["big.test"]
    assert big.requests == BIG and big.peak <= 4
    # Without deferral the scheduler would hold the first ~1,500 big jobs and read on only
    # as they finish: the small hosts would wait for about BIG - 1,500 requests (50%).
    early = sorted(big.times)[BIG // 20]
    for h in range(SMALL_HOSTS):
        (served,) = server.log.hosts[f"s{h}.test"].times
        assert served < early, f"s{h}.test waited for more than 5% of big.test"


async def test_deferred_jobs_keep_their_order(server: Misbehaving) -> None:
    count = HOST_QUEUE * 3
    urls = [server.url(f"/ok?n={n}", host="one.test") for n in range(count)]
    # Two workers and one allowed per host: the host cannot keep both busy, so its backlog
    # beyond HOST_QUEUE is deferred to the store and comes back from it.
    engine = shoal.Engine(
        network=shoal.Network(resolver=resolver()), limits=Limits(concurrency=2, per_host=1)
    )
    async with engine, engine.stream(urls) as results:
        order = [result.url async for result in results]
    assert order == urls
