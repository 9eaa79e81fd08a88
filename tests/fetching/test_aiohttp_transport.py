"""The transport seam and its aiohttp implementation: the installed aiohttp lies in the
range whose internals the transport was written against (and pyproject.toml asks for that
range), no other module touches those internals, and the fetcher's attempt is one exchange
through the transport."""

from __future__ import annotations

import re
import tomllib
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from shoal import ErrorKind, Limits, Request, Timeouts
from shoal.fetching import Fetcher, SessionSettings
from shoal.fetching.aiohttp_transport import (
    SUPPORTED,
    AiohttpTransport,
    check_version,
    version_of,
)
from shoal.fetching.deadlines import Watchdog
from shoal.fetching.transport import Incoming, Outgoing, Transport, TransportFailure
from shoal.job import Job
from tests.conftest import resolver
from tests.servers import Misbehaving

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_the_installed_aiohttp_is_supported() -> None:
    low, high = SUPPORTED
    assert low <= version_of(aiohttp.__version__) < high
    check_version(aiohttp.__version__)


def test_pyproject_bounds_aiohttp_as_the_transport_checks() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (aiohttp_dependency,) = [d for d in dependencies if d.startswith("aiohttp[")]
    match = re.fullmatch(r"aiohttp\[speedups\]>=([\d.]+),<([\d.]+)", aiohttp_dependency)
    assert match is not None, aiohttp_dependency
    low, high = SUPPORTED
    assert version_of(match[1]) == low
    assert version_of(match[2]) == high


@pytest.mark.parametrize("version", ["3.14.3", "3.15.0", "3.15.0rc1", "4.0.0a1", "3.9.5"])
def test_an_unsupported_aiohttp_is_a_clear_error(version: str) -> None:
    with pytest.raises(ImportError, match=rf"shoal needs aiohttp >=3\.14\.4,<3\.15 .*{version}"):
        check_version(version)


@pytest.mark.parametrize("version", ["3.14.4", "3.14.5", "3.14.12", "3.14.6.dev0"])
def test_a_supported_aiohttp_passes(version: str) -> None:
    check_version(version)


def test_versions_are_compared_as_numbers() -> None:
    assert version_of("3.14.5") == (3, 14, 5)
    assert version_of("3.15.0rc1") == (3, 15, 0)
    assert version_of("4.0.0a1") == (4, 0, 0)
    assert version_of("3.14.12") > version_of("3.14.4")


SRC = Path(__file__).parents[2] / "src" / "shoal"
#: aiohttp's internals the transport relies on (see its module's docstring).
INTERNALS = (
    "client_proto",
    "ResponseHandler",
    "_factory",
    "_parser",
    "_upgraded",
    "_retry_connection",
    "_reschedule_timeout",
    "_drop_timeout",
    "_on_read_timeout",
)


def test_only_the_transport_touches_aiohttp_internals() -> None:
    """No other module of shoal names one of aiohttp's internals."""
    touching = {
        f"{path.relative_to(SRC)}: {name}"
        for path in SRC.rglob("*.py")
        if path.name != "aiohttp_transport.py"
        for name in INTERNALS
        if re.search(rf"\b{name}\b", path.read_text())
    }
    assert touching == set()
    text = (SRC / "fetching" / "aiohttp_transport.py").read_text()
    assert all(re.search(rf"\b{name}\b", text) for name in INTERNALS)


class Recording:
    """A transport in front of another: what the fetcher asks of it, and only that."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[Outgoing] = []

    def exchange(self, request: Outgoing) -> AbstractAsyncContextManager[Incoming]:
        self.sent.append(request)
        return self.inner.exchange(request)

    async def close(self) -> None:
        await self.inner.close()


async def test_the_fetcher_makes_its_attempt_through_the_transport(server: Misbehaving) -> None:
    transport = Recording(AiohttpTransport(SessionSettings(connections=4, resolver=resolver())))
    watchdog = Watchdog(0.05)
    fetcher = Fetcher(
        transport, limits=Limits(max_redirects=4), timeouts=Timeouts(), watchdog=watchdog
    )
    url = server.url("/redirect/2")
    job = Job(1, Request(url, headers={"X-Test": "1"}), None, URL(url), None, "a.test")
    job.attempts = 1
    try:
        result = await fetcher.run(job)
    finally:
        watchdog.close()
        await transport.close()
    assert result.error is None and result.status == 200
    assert result.final_url == server.url("/ok")
    assert result.redirect_chain == [
        (server.url("/redirect/2"), 302),
        (server.url("/redirect/1"), 302),
    ]
    assert result.address is not None and result.address.startswith("127.0.0.1:")
    (sent,) = transport.sent
    assert (sent.method, str(sent.url), sent.max_redirects) == ("GET", url, 4)
    assert sent.headers == {"X-Test": "1"} and sent.capture is None
    assert sent.attempt is not None  # its deadlines, kept by shoal's watchdog


async def test_a_failure_in_the_transport_is_an_error_value(server: Misbehaving) -> None:
    transport = AiohttpTransport(SessionSettings(connections=4, resolver=resolver()))
    request = Outgoing(method="GET", url=server.url("/loop"), max_redirects=2)

    async def send() -> None:
        async with transport.exchange(request):
            pass

    try:
        with pytest.raises(TransportFailure) as raised:
            await send()
    finally:
        await transport.close()
    assert raised.value.error.kind is ErrorKind.TOO_MANY_REDIRECTS
    assert raised.value.redirect_chain is not None and len(raised.value.redirect_chain) == 3
