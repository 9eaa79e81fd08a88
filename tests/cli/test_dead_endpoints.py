"""Connection health is an endpoint's: a dead port of a host fails only its own requests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.command import shoal
from tests.helpers import free_port, read_records
from tests.servers import Misbehaving


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_a_dead_port_fails_only_its_own_requests(
    server: Misbehaving, tmp_path: Path, processes: str
) -> None:
    # The report: one input, every 20th URL to a refused port of 127.0.0.1, the rest to a
    # healthy port of the same address. Only the dead port's requests may fail, in one
    # process or over several (each learns of the dead port on its own).
    port = free_port()
    urls = [
        f"http://127.0.0.1:{port}/dead/{n}"
        if n % 20 == 0
        else f"http://127.0.0.1:{server.port}/flaky/ok{n}?fail=0"
        for n in range(1000)
    ]
    given = tmp_path / "dead.txt"
    given.write_text("\n".join(urls) + "\n")
    output = tmp_path / "dead.jsonl"
    run = await shoal(
        "fetch", str(given), "-o", str(output), "-q",
        "--dead-cooldown", "0.05", "--backoff", "0.01", "--processes", processes,
        within_s=30,
    )  # fmt: skip
    assert run.code != 0  # some requests failed: the dead port's
    records = read_records(output)
    assert len(records) == len(urls)
    healthy = [r for r in records if f":{server.port}/" in r["url"]]
    dead = [r for r in records if f":{port}/" in r["url"]]
    assert len(dead) == 50 and len(healthy) == 950
    assert Counter(r["status"] for r in healthy) == {200: 950}, [
        r["error"] for r in healthy if r["status"] != 200
    ][:3]
    assert all(r["error"] is None for r in healthy)
    assert server.log.total == 950
    # The dead port: connect errors, parked, probed, then given up by its own name.
    assert all(r["error"]["kind"] == "connect" for r in dead)
    given_up = [r for r in dead if "given up" in r["error"]["message"]]
    assert given_up, [r["error"] for r in dead][:3]
    for record in given_up:
        assert record["error"]["message"].startswith(f"http://127.0.0.1:{port} given up after")
