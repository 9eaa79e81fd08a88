"""Credentials stay with their origin, redirects stay on http(s), and the open-file limit is
checked before the first request."""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

import shoal
from shoal import ConfigError, ErrorKind, Limits
from shoal.fetching import descriptors_needed
from tests.command import RESOLVE, environment
from tests.conftest import resolver
from tests.fetching.test_failures import fetch_one
from tests.servers import Misbehaving

SECRETS = {
    "Authorization": "Bearer secret-token",
    "Cookie": "session=secret-cookie",
    "Proxy-Authorization": "Basic c2VjcmV0",
}


def _redirect(server: Misbehaving, target: str) -> str:
    return server.url(f"/redirect-to?url={quote(target, safe='')}")


@pytest.mark.parametrize("redirect", ["other host", "other port", "same origin"])
async def test_credentials_are_not_sent_to_another_origin(
    server: Misbehaving, redirect: str
) -> None:
    # A port bound but not listening: connections to it are refused, whatever else runs.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    if redirect == "other host":
        target = server.url("/echo", host="b.test")
    elif redirect == "other port":
        target = f"http://a.test:{closed.getsockname()[1]}/echo"
    else:
        target = server.url("/echo")
    engine = shoal.Engine(
        network=shoal.Network(headers={**SECRETS, "X-Kept": "yes"}, resolver=resolver()),
        retry=shoal.RetryPolicy(retries=0),
        timeouts=shoal.Timeouts(total_s=3, connect_s=1, read_s=2),
        outputs=shoal.Outputs(keep_body=True),
    )
    with closed:
        async with engine, engine.stream([_redirect(server, target)]) as results:
            (result,) = [result async for result in results]
    first = server.log.headers[0]
    for name, value in SECRETS.items():  # the first hop gets them: same origin as asked
        assert first.get(name) == value
    if redirect == "other port":
        # Nothing listens there: the hop fails, and it must not be a leak either way.
        assert result.error is not None and result.error.kind is ErrorKind.CONNECT
        assert server.log.total == 1
        return
    assert result.ok, result
    assert server.log.total == 2
    echoed = orjson.loads(result.body or b"{}")["headers"]
    assert echoed.get("X-Kept") == "yes"
    for name, value in SECRETS.items():
        if redirect == "same origin":
            assert echoed.get(name) == value
        else:
            assert name not in echoed, f"{name} leaked to {target}"


@pytest.mark.parametrize(
    "target",
    ["ftp://a.test/file", "file:///etc/passwd", "javascript:alert(1)", "data:text/plain,x"],
)
async def test_redirects_never_leave_http(server: Misbehaving, target: str) -> None:
    result = await fetch_one(_redirect(server, target))
    assert result.error is not None, result
    assert result.error.kind in (ErrorKind.UNSUPPORTED_SCHEME, ErrorKind.INVALID_URL)
    assert server.log.total == 1


# -- the open-file limit ------------------------------------------------------------------------


@pytest.fixture
def low_soft_limit() -> Iterator[tuple[int, int]]:
    """Lower this process's soft open-file limit for a test, and restore it after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = 256
    if hard != resource.RLIM_INFINITY and hard < 2 * lowered:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield lowered, hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_engine_raises_the_soft_limit_when_allowed(low_soft_limit: tuple[int, int]) -> None:
    lowered, _ = low_soft_limit
    concurrency = lowered * 2 - 100
    engine = shoal.Engine(limits=Limits(concurrency=concurrency))
    # Constructing an engine changes nothing of the process; entering it raises the limit.
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == lowered
    async with engine:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert soft >= descriptors_needed(concurrency) > lowered


async def test_engine_within_the_limit_leaves_it_alone(low_soft_limit: tuple[int, int]) -> None:
    lowered, _ = low_soft_limit
    async with shoal.Engine(limits=Limits(concurrency=10)):
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == lowered


def _limit_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


async def test_engine_over_the_hard_limit_fails_fast() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit to exceed")
    engine = shoal.Engine(limits=Limits(concurrency=hard))  # (entering it checks)
    with pytest.raises(ConfigError) as raised:
        async with engine:
            pass
    assert raised.value.option == "concurrency"
    assert "open files" in raised.value.message
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)


async def test_cli_concurrency_over_the_hard_limit_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("http://a.test/\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shoal",
        "fetch",
        str(tmp_path / "urls.txt"),
        "-o",
        str(tmp_path / "out.jsonl"),
        "-c",
        "1000",
        *RESOLVE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=lambda: _limit_files(200),
        env=environment(),
    )
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    message = err.decode()
    assert "--concurrency" in message and "open files" in message
    assert "Traceback" not in message
    assert not (tmp_path / "out.jsonl").exists()
