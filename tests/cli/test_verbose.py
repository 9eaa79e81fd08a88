"""``-v``: one debug line per attempt on stderr (what, which attempt, how it ended, how
long, what next), from the ``shoal`` logger."""

from __future__ import annotations

import re

from tests.command import RESOLVE, lines, shoal
from tests.servers import Misbehaving

OPTIONS = ("--progress", "off", "--retries", "1", "--backoff", "0.01", "--dead-after", "0")


def attempt_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " attempt " in line]


async def test_verbose_logs_each_attempt_and_its_retry_decision(server: Misbehaving) -> None:
    flaky = server.url("/flaky/verbose?fail=1")
    refused = "http://127.0.0.1:1/"
    done = await shoal("fetch", *RESOLVE, *OPTIONS, "-v", stdin=lines(flaky, refused))
    assert done.code == 1, done.stderr
    logged = attempt_lines(done.stderr)
    stamp = r"\d\d:\d\d:\d\d\.\d{3} "
    took = r" in \d+\.\d ms"
    expected = [
        rf"{stamp}attempt 1 GET {re.escape(flaky)}: 503{took}; retry in \d+\.\d{{3}} s",
        rf"{stamp}attempt 2 GET {re.escape(flaky)}: 200{took}; final",
        rf"{stamp}attempt 1 GET {re.escape(refused)}: no response \(connect: .+\){took};"
        r" retry in \d+\.\d{3} s",
        rf"{stamp}attempt 2 GET {re.escape(refused)}: no response \(connect: .+\){took}; final",
    ]
    for pattern in expected:
        assert sum(1 for line in logged if re.fullmatch(pattern, line)) == 1, (pattern, logged)
    assert len(logged) == 4, logged
    # The records are as without -v, and stdout holds nothing else.
    assert [record["attempts"] for record in done.records()] == [2, 2]


async def test_without_verbose_no_attempt_is_logged(server: Misbehaving) -> None:
    done = await shoal("fetch", *RESOLVE, *OPTIONS, stdin=lines(server.url("/flaky/quiet?fail=1")))
    assert done.code == 0, done.stderr
    assert attempt_lines(done.stderr) == []
