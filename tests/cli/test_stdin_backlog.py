"""Lines already read from a pipe are fetched while the pipe stays open and quiet.

The README: "A batch from a pipe ends early when no more lines are ready, so the lines
already there are fetched (and an interrupt is seen) while the pipe is quiet." That must
hold for a backlog too: many lines for one host, more than the scheduler keeps in memory
for a host.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.command import RESOLVE, finish, line_count, lines, start
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving


async def test_backlog_of_one_host_is_fetched_while_stdin_stays_open(
    server: Misbehaving, tmp_path: Path
) -> None:
    urls = [server.url(f"/flaky/q{n}?fail=0") for n in range(300)]
    output = tmp_path / "out.jsonl"
    process = await start("fetch", "-o", str(output), *RESOLVE, "--progress", "off")
    assert process.stdin is not None
    try:
        process.stdin.write(lines(*urls))
        await process.stdin.drain()
        await wait_until(lambda: line_count(output) == len(urls), 5, "every record")
    finally:
        process.stdin.close()
        done = await finish(process)
    assert done.code == 0, done.stderr
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
