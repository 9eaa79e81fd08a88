"""A resumed job whose input file was replaced under the same name is refused (it would skip
or repeat lines); --restart starts over. (A file that only grew: tests/cli/test_grown_input.py.)"""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.command import RESOLVE, shoal
from tests.servers import Misbehaving


def urls(server: Misbehaving, tag: str, count: int) -> str:
    return "".join(server.url(f"/ok?{tag}={n}") + "\n" for n in range(count))


def record_urls(path: Path) -> list[str]:
    return [orjson.loads(line)["url"] for line in path.read_bytes().splitlines()]


async def test_a_replaced_input_is_refused_until_restart(
    server: Misbehaving, tmp_path: Path
) -> None:
    listing, out = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    args = ("fetch", str(listing), "-o", str(out), *RESOLVE, "--progress", "off", "-q")
    listing.write_text(urls(server, "a", 3))
    assert (await shoal(*args)).code == 0
    listing.write_text(urls(server, "b", 3))  # another list under the same name
    refused = await shoal(*args)
    assert refused.code == 2
    assert "has changed since this job began" in refused.stderr
    assert "--restart" in refused.stderr
    assert len(record_urls(out)) == 3  # nothing lost, nothing added
    assert server.log.total == 3
    restarted = await shoal(*args, "--restart")
    assert restarted.code == 0, restarted.stderr
    # records come in the order requests finish
    assert sorted(record_urls(out)) == [server.url(f"/ok?b={n}") for n in range(3)]


async def test_a_shortened_input_is_refused(server: Misbehaving, tmp_path: Path) -> None:
    listing, out = tmp_path / "urls.txt", tmp_path / "out.jsonl"
    args = ("fetch", str(listing), "-o", str(out), *RESOLVE, "--progress", "off", "-q")
    listing.write_text(urls(server, "a", 3))
    assert (await shoal(*args)).code == 0
    listing.write_text(urls(server, "a", 2))  # the same start, cut short
    refused = await shoal(*args)
    assert refused.code == 2
    assert "has changed" in refused.stderr
