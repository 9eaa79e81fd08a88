"""``shoal fetch --dashboard``: the URL on stderr, the page's API steering a real run in
one process and in several, and each refusal at start (exit 2, naming the option)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.command import RESOLVE, environment, finish, lines, shoal, start
from tests.helpers import read_records, wait_until
from tests.servers import Misbehaving


async def _dashboard_url(process: asyncio.subprocess.Process) -> str:
    """Read stderr up to the line giving the dashboard's URL."""
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 10)).decode()
        assert line, "shoal ended without saying where its dashboard is"
        found = re.search(r"dashboard at (http://\S+)", line)
        if found:
            return found.group(1)


async def _post(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.post(url) as response:
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data


async def _stats(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(base + "api/stats") as response:
        data: dict[str, Any] = await response.json()
        return data


async def _steer(server: Misbehaving, tmp_path: Path, *extra: str) -> None:
    """Pause a run from its dashboard (nothing reaches the server), resume it, stop it
    (exit 130), then run the same command again: every request once."""
    count = 150
    urls = [server.url("/delay?s=0.05", host=f"s{n}.test") for n in range(count)]
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*urls))
    output = tmp_path / "out.jsonl"
    args = ("fetch", str(source), "-o", str(output), "-c", "6", *RESOLVE, "--progress", "off")
    process = await start(*args, "--dashboard", "0", *extra)
    try:
        base = await _dashboard_url(process)
        async with aiohttp.ClientSession() as session:
            await wait_until(lambda: server.log.total >= 10, 10, "some requests")
            assert (await _post(session, base + "api/pause"))["paused"] is True
            for _ in range(500):  # until the page's numbers say paused and drained
                stats = await _stats(session, base)
                if stats["paused"] and stats["in_flight"] == 0:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"the run did not pause: {stats}")
            arrived = server.log.total
            await asyncio.sleep(0.5)
            assert server.log.total == arrived < count  # paused: nothing new was sent
            await _post(session, base + "api/resume")
            await wait_until(lambda: server.log.total > arrived, 5, "requests after resume")
            await _post(session, base + "api/stop")
        stopped = await finish(process, within_s=15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert stopped.code == 130, stopped.stderr
    assert "interrupted" in stopped.stderr
    rerun = await shoal(*args, *extra)
    assert rerun.code == 0, rerun.stderr
    assert Counter(record["url"] for record in read_records(output)) == Counter(urls)
    assert {server.log.hosts[f"s{n}.test"].requests for n in range(count)} == {1}


async def test_the_dashboard_steers_a_run(server: Misbehaving, tmp_path: Path) -> None:
    await _steer(server, tmp_path)


async def test_the_dashboard_steers_every_process(server: Misbehaving, tmp_path: Path) -> None:
    await _steer(server, tmp_path, "--processes", "2")


@pytest.mark.parametrize("given", ["environment", "option"])
async def test_the_token_from_the_environment_or_option_guards_every_route(
    server: Misbehaving, tmp_path: Path, given: str
) -> None:
    token = ("--dashboard-token", "s3cret") if given == "option" else ()
    env = environment(SHOAL_DASHBOARD_TOKEN="s3cret") if given == "environment" else None
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*[server.url("/delay?s=2", host=f"t{n}.test") for n in range(4)]))
    process = await start(
        "fetch",
        str(source),
        "-o",
        str(tmp_path / "out.jsonl"),
        *RESOLVE,
        "--dashboard",
        "127.0.0.1:0",
        *token,
        env=env,
    )
    try:
        url = await _dashboard_url(process)
        assert url.endswith("/?token=s3cret")
        base = url.split("?")[0]
        async with aiohttp.ClientSession() as session:
            for path in ("", "api/stats", "metrics"):
                async with session.get(base + path) as response:
                    assert response.status == 401, path
            async with session.post(base + "api/stop") as response:
                assert response.status == 401
            headers = {"Authorization": "Bearer s3cret"}
            async with session.post(base + "api/stop", headers=headers) as response:
                assert response.status == 200
        stopped = await finish(process, within_s=15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert stopped.code == 130, stopped.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--dashboard", "0.0.0.0:0"), "'--dashboard-token'"),
        (("--dashboard", "nonsense"), "'--dashboard'"),
        (("--dashboard", "127.0.0.1:70000"), "'--dashboard'"),
    ],
)
async def test_a_dashboard_that_cannot_be_safe_is_a_usage_error(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    source = tmp_path / "urls.txt"
    source.write_bytes(lines("http://a.test/"))
    result = await shoal("fetch", str(source), "-o", str(tmp_path / "out.jsonl"), *args)
    assert result.code == 2, result.stderr
    assert named in result.stderr
    assert not (tmp_path / "out.jsonl.journal").exists()  # refused before anything ran


async def test_a_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        source = tmp_path / "urls.txt"
        source.write_bytes(lines("http://a.test/"))
        result = await shoal(
            "fetch", str(source), "-o", str(tmp_path / "o.jsonl"), "--dashboard", str(port)
        )
    assert result.code == 2, result.stderr
    assert "--dashboard" in result.stderr and "cannot listen" in result.stderr
