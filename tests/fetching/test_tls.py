"""TLS faults fail as ``tls`` with a message that names the cause; ``verify_tls=False``
accepts every certificate; ``ca_bundle`` adds roots to the system's; and https:// goes
through an HTTP proxy's CONNECT tunnel, verified the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal import ConfigError, ErrorKind, RetryPolicy, Timeouts
from tests.command import RESOLVE, environment, lines
from tests.command import shoal as run_shoal
from tests.servers import Misbehaving
from tests.tls_server import (
    FAULTY_HOSTS,
    Certificates,
    ConnectProxy,
    HandshakeRefuser,
    TLSServer,
    make_certificates,
)

#: Every test host name is loopback, as curl's --resolve would have it.
LOOPBACK = {"*.test": "127.0.0.1"}

#: What each faulty certificate's message says, after "TLS certificate of HOST:PORT ".
CAUSES = {
    "expired.test": "has expired (certificate verify failed: certificate has expired)",
    "future.test": "is not valid yet (certificate verify failed: certificate is not yet valid)",
    "self-signed.test": "is self-signed (it is its own issuer, and not trusted) "
    "(certificate verify failed: self-signed certificate)",
    "mismatch.test": "is for another host name (certificate verify failed: Hostname "
    "mismatch, certificate is not valid for 'mismatch.test')",
    "unknown-ca.test": "was issued by an unknown CA (its issuer is not trusted) "
    "(certificate verify failed: unable to get local issuer certificate)",
}


@pytest.fixture(scope="module")
def certificates() -> Certificates:
    return make_certificates()


@pytest.fixture
def bundle(certificates: Certificates, tmp_path: Path) -> str:
    """The test CA as a PEM file, for ``ca_bundle``."""
    return certificates.write_bundle(tmp_path / "ca.pem")


@pytest.fixture
async def tls(certificates: Certificates) -> AsyncIterator[TLSServer]:
    server = TLSServer(certificates)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    server = ConnectProxy()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def fetch(url: str, *, keep_body: bool = False, **network: Any) -> shoal.Result:
    engine = shoal.Engine(
        network=shoal.Network(resolve=LOOPBACK, **network),
        retry=RetryPolicy(retries=0),
        timeouts=Timeouts(total_s=5, connect_s=2, read_s=2),
        outputs=shoal.Outputs(keep_body=keep_body),
    )

    async def run() -> list[shoal.Result]:
        async with engine, engine.stream([url]) as results:
            return [result async for result in results]

    (result,) = await asyncio.wait_for(run(), 8)
    return result


def tls_error(result: shoal.Result) -> str:
    assert result.error is not None, result
    assert result.error.kind is ErrorKind.TLS, result.error
    return result.error.message


# -- certificates --------------------------------------------------------------------------


async def test_a_certificate_from_the_bundle_is_trusted(tls: TLSServer, bundle: str) -> None:
    result = await fetch(tls.url("/ok"), ca_bundle=bundle, keep_body=True)
    assert result.ok, result.error
    assert result.status == 200 and result.body == b"ok"


async def test_without_the_bundle_the_test_ca_is_unknown(tls: TLSServer) -> None:
    message = tls_error(await fetch(tls.url("/ok")))
    assert message == f"TLS certificate of good.test:{tls.port} {CAUSES['unknown-ca.test']}"
    assert tls.requests.total() == 0


@pytest.mark.parametrize("host", FAULTY_HOSTS)
async def test_each_certificate_fault_is_named(tls: TLSServer, bundle: str, host: str) -> None:
    # The bundle trusts the test CA, so each certificate's own fault is what is reported.
    message = tls_error(await fetch(tls.url("/ok", host=host), ca_bundle=bundle))
    assert message == f"TLS certificate of {host}:{tls.port} {CAUSES[host]}"
    assert tls.requests.total() == 0


@pytest.mark.parametrize("with_bundle", [False, True], ids=["system roots", "bundle"])
@pytest.mark.parametrize("host", FAULTY_HOSTS)
async def test_insecure_accepts_every_certificate_fault(
    tls: TLSServer, bundle: str, host: str, with_bundle: bool
) -> None:
    options: dict[str, Any] = {"ca_bundle": bundle} if with_bundle else {}
    result = await fetch(tls.url("/ok", host=host), verify_tls=False, **options)
    assert result.ok, result.error
    assert tls.requests[host] == 1


async def test_the_bundle_adds_to_the_system_roots(
    tls: TLSServer, certificates: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL reads the system's roots from SSL_CERT_FILE/SSL_CERT_DIR: here the "system"
    # trusts only the other CA, and the bundle the test CA; both hosts are then trusted.
    system = certificates.write_bundle(tmp_path / "system.pem", certificates.unknown_ca)
    (tmp_path / "no-roots").mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", system)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-roots"))
    bundle = certificates.write_bundle(tmp_path / "ca.pem")
    for host in ("good.test", "unknown-ca.test"):
        result = await fetch(tls.url("/ok", host=host), ca_bundle=bundle)
        assert result.ok, (host, result.error)
    assert tls.requests == {"good.test": 1, "unknown-ca.test": 1}


# -- handshakes ----------------------------------------------------------------------------


async def test_a_port_that_does_not_speak_tls(server: Misbehaving) -> None:
    url = f"https://a.test:{server.port}/ok"
    for verify in (True, False):  # no certificate to waive: -k cannot help
        message = tls_error(await fetch(url, verify_tls=verify))
        assert message == (
            f"TLS handshake with a.test:{server.port} failed: the server does not speak "
            "TLS on this port (wrong version number)"
        )


async def test_a_refused_handshake() -> None:
    refuser = HandshakeRefuser()
    await refuser.start()
    try:
        message = tls_error(await fetch(f"https://a.test:{refuser.port}/ok"))
    finally:
        await refuser.stop()
    assert message == (
        f"TLS handshake with a.test:{refuser.port} failed: the server refused the handshake "
        "(sslv3 alert handshake failure)"
    )


# -- through an HTTP proxy -----------------------------------------------------------------


async def test_https_through_a_connect_tunnel(
    tls: TLSServer, proxy: ConnectProxy, bundle: str
) -> None:
    result = await fetch(
        tls.url("/ok"), proxy=f"http://p.test:{proxy.port}", ca_bundle=bundle, keep_body=True
    )
    assert result.ok, result.error
    assert result.body == b"ok"
    assert proxy.tunnels == [f"good.test:{tls.port}"]
    assert tls.requests == {"good.test": 1}


@pytest.mark.parametrize("host", ["expired.test", "mismatch.test"])
async def test_a_certificate_fault_behind_a_tunnel_is_named_alike(
    tls: TLSServer, proxy: ConnectProxy, bundle: str, host: str
) -> None:
    proxied: dict[str, Any] = {"proxy": f"http://p.test:{proxy.port}", "ca_bundle": bundle}
    message = tls_error(await fetch(tls.url("/ok", host=host), **proxied))
    assert message == f"TLS certificate of {host}:{tls.port} {CAUSES[host]}"
    assert proxy.tunnels == [f"{host}:{tls.port}"]


async def test_a_proxy_that_refuses_the_tunnel(tls: TLSServer, bundle: str) -> None:
    refusing = ConnectProxy(refuse=403)
    await refusing.start()
    try:
        result = await fetch(
            tls.url("/ok"), proxy=f"http://p.test:{refusing.port}", ca_bundle=bundle
        )
    finally:
        await refusing.stop()
    assert result.error is not None and result.error.kind is ErrorKind.CONNECT, result.error
    assert result.error.message == (
        f"proxy p.test:{refusing.port} refused the tunnel to good.test:{tls.port} "
        "(it answered CONNECT with 403 Forbidden)"
    )
    assert result.error.endpoint == f"http://p.test:{refusing.port}"  # the proxy failed
    assert refusing.tunnels == [f"good.test:{tls.port}"] and tls.requests.total() == 0


# -- a bad bundle is a usage error -----------------------------------------------------------


@pytest.fixture
def bad_bundles(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """A bad ``ca_bundle`` per kind of mistake, and what its message says."""
    (tmp_path / "empty.pem").write_bytes(b"")
    (tmp_path / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "a-directory").mkdir()
    return {
        "missing": (str(tmp_path / "nope.pem"), "cannot read {}: No such file or directory"),
        "directory": (str(tmp_path / "a-directory"), "cannot read {}: Is a directory"),
        "empty": (str(tmp_path / "empty.pem"), "{} holds no PEM certificate"),
        "broken": (str(tmp_path / "broken.pem"), "{} is not a valid PEM file of CA"),
    }


@pytest.mark.parametrize("mistake", ["missing", "directory", "empty", "broken"])
def test_a_bad_bundle_is_a_config_error(
    bad_bundles: dict[str, tuple[str, str]], mistake: str
) -> None:
    path, expected = bad_bundles[mistake]
    with pytest.raises(ConfigError) as raised:
        shoal.Engine(network=shoal.Network(ca_bundle=path))
    assert raised.value.option == "ca_bundle"
    assert raised.value.message.startswith(expected.format(path)), raised.value.message


# -- the command line ----------------------------------------------------------------------


async def test_cli_ca_bundle_is_trusted_and_faults_are_named(tls: TLSServer, bundle: str) -> None:
    urls = [tls.url("/ok"), tls.url("/ok", host="expired.test")]
    done = await run_shoal(
        "fetch", *RESOLVE, "--ca-bundle", bundle, "--progress", "off", "-q", stdin=lines(*urls)
    )
    assert done.code == 1, done.stderr  # some requests failed
    records = {record["url"]: record for record in done.records()}
    assert records[urls[0]]["status"] == 200 and records[urls[0]]["error"] is None
    assert records[urls[1]]["error"] == {
        "kind": "tls",
        "message": f"TLS certificate of expired.test:{tls.port} {CAUSES['expired.test']}",
    }


@pytest.mark.parametrize("where", ["option", "environment"])
async def test_cli_bad_ca_bundle_is_a_usage_error(
    tls: TLSServer, tmp_path: Path, where: str
) -> None:
    missing = str(tmp_path / "nope.pem")
    args: tuple[str, ...] = ("--ca-bundle", missing) if where == "option" else ()
    env = environment(SHOAL_CA_BUNDLE=missing) if where == "environment" else None
    done = await run_shoal("fetch", *RESOLVE, *args, stdin=lines(tls.url("/ok")), env=env)
    assert done.code == 2, done.stderr
    assert "'--ca-bundle'" in done.stderr and "nope.pem" in done.stderr, done.stderr
    assert "No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == b"" and tls.requests.total() == 0
