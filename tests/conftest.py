"""Shared fixtures: the misbehaving server, a resolver to loopback, and a loop watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shoal import StaticResolver
from tests import skips
from tests.arrival_server import ArrivalServer
from tests.servers import Misbehaving

#: ``pytester`` runs an inner pytest session (the skip check's own tests use it).
pytest_plugins = ["pytester"]

#: Every test host name maps to loopback; no other name resolves (no real DNS in tests).
TEST_HOSTS = {"*.test": "127.0.0.1"}


def pytest_configure(config: pytest.Config) -> None:
    skips.install(config)  # SHOAL_NO_UNEXPECTED_SKIPS=1 (CI): a skip not allowed fails


def resolver() -> StaticResolver:
    """A resolver for ``*.test`` names only: anything else fails as a DNS error."""
    return StaticResolver(TEST_HOSTS)


@pytest.fixture
async def server() -> AsyncIterator[Misbehaving]:
    misbehaving = Misbehaving()
    await misbehaving.start()
    try:
        yield misbehaving
    finally:
        await misbehaving.stop()


@pytest.fixture
async def arrivals() -> AsyncIterator[ArrivalServer]:
    """The misbehaving server in a process of its own: arrival times a stall of the
    test's event loop cannot shorten (``await arrivals.read_log()``)."""
    remote = ArrivalServer()
    await remote.start()
    try:
        yield remote
    finally:
        await remote.stop()


@pytest.fixture(autouse=True)
async def loop_watchdog() -> AsyncIterator[None]:
    """Fail a test whose event loop reported an error: a task exception never retrieved,
    an unclosed session or connector, an exception in a callback."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    try:
        yield
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not reports, f"the event loop reported: {[r.get('message') for r in reports]}"


async def killed_after(process: asyncio.subprocess.Process, delay_s: float) -> bool:
    """Let ``process`` run up to ``delay_s``, then kill it with SIGKILL (unless it ended on
    its own first); True when SIGKILL ended it."""
    try:
        await asyncio.wait_for(process.wait(), delay_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):  # it may just have ended
            process.kill()
        await process.wait()
    return process.returncode == -signal.SIGKILL
