"""HTTPS on the wire transport: a verified connection (the test CA trusted), each
certificate fault and a refused handshake fail as the aiohttp transport's do, word for
word, and ``verify_tls=False`` accepts every certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shoal.fetching.aiohttp_transport import AiohttpTransport
from shoal.fetching.resolver import StaticResolver
from shoal.fetching.session import SessionSettings, trust_context
from shoal.fetching.transport import Outgoing, Transport, TransportFailure
from shoal.fetching.wire import WireTransport
from tests.tls_server import (
    FAULTY_HOSTS,
    Certificates,
    HandshakeRefuser,
    TLSServer,
    make_certificates,
)

LOOPBACK = {"*.test": "127.0.0.1"}


@pytest.fixture(scope="module")
def certificates() -> Certificates:
    return make_certificates()


@pytest.fixture
async def tls(certificates: Certificates) -> AsyncIterator[TLSServer]:
    server = TLSServer(certificates)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def settings(bundle: str | None, verify: bool = True) -> SessionSettings:
    return SessionSettings(
        connections=4,
        resolver=StaticResolver(LOOPBACK),
        verify_tls=verify,
        tls_context=None if bundle is None else trust_context(bundle),
    )


async def answer(transport: Transport, url: str) -> tuple[Any, ...]:
    try:
        async with transport.exchange(Outgoing(method="GET", url=url)) as response:
            return response.status, await response.read()
    except TransportFailure as failure:
        error = failure.error
        return error.kind, error.message, error.endpoint
    finally:
        await transport.close()


async def both(url: str, bundle: str | None, verify: bool = True) -> tuple[Any, Any]:
    wire = await answer(WireTransport(settings(bundle, verify)), url)
    return wire, await answer(AiohttpTransport(settings(bundle, verify)), url)


async def test_a_verified_host_answers(
    tls: TLSServer, certificates: Certificates, tmp_path: Path
) -> None:
    bundle = certificates.write_bundle(tmp_path / "ca.pem")
    transport = WireTransport(settings(bundle))
    try:
        for _ in range(3):
            async with transport.exchange(Outgoing(method="GET", url=tls.url("/ok"))) as response:
                assert (response.status, await response.read()) == (200, b"ok")
        assert transport.pool.idle == 1
    finally:
        await transport.close()


@pytest.mark.parametrize("host", FAULTY_HOSTS)
async def test_certificate_faults_fail_in_the_same_words(
    tls: TLSServer, certificates: Certificates, tmp_path: Path, host: str
) -> None:
    bundle = certificates.write_bundle(tmp_path / "ca.pem")
    wire, reference = await both(tls.url("/ok", host=host), bundle)
    assert wire == reference
    assert wire[0] == "tls"


async def test_without_verification_every_certificate_passes(tls: TLSServer) -> None:
    wire, reference = await both(tls.url("/ok", host="self-signed.test"), None, verify=False)
    assert wire == reference == (200, b"ok")


async def test_a_refused_handshake_fails_in_the_same_words() -> None:
    refuser = HandshakeRefuser()
    await refuser.start()
    try:
        wire, reference = await both(f"https://good.test:{refuser.port}/", None)
    finally:
        await refuser.stop()
    assert wire == reference
