"""TLS on 127.0.0.1 for the tests, with the certificate faults a fetcher meets in the wild.

:class:`TLSServer` is one HTTPS server that picks its certificate by the host name the
client asks for (SNI), so each name is one fault (every name maps to 127.0.0.1):

* ``good.test`` — issued by the test CA (``Certificates.ca``; trust it with its bundle).
* ``expired.test`` — issued by the test CA, expired yesterday.
* ``future.test`` — issued by the test CA, valid from tomorrow.
* ``self-signed.test`` — its own issuer.
* ``mismatch.test`` — issued by the test CA, but for ``other.test``.
* ``unknown-ca.test`` — issued by another CA (``Certificates.unknown_ca``).

Routes: ``/ok`` — 200 ``ok``. :class:`HandshakeRefuser` answers every ClientHello with a
``handshake_failure`` alert; :class:`ConnectProxy` is an HTTP proxy that opens ``CONNECT``
tunnels to 127.0.0.1, or refuses them with a status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import trustme
from aiohttp import web
from aiohttp.web_request import Request
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: The host names :class:`TLSServer` has a certificate for; each one is a fault but ``good``.
FAULTY_HOSTS = (
    "expired.test",
    "future.test",
    "self-signed.test",
    "mismatch.test",
    "unknown-ca.test",
)


@dataclass(frozen=True, slots=True)
class Certificates:
    """The test CA, a CA nobody trusts, and a server context per host name."""

    ca: trustme.CA
    unknown_ca: trustme.CA
    by_host: dict[str, ssl.SSLContext]

    def write_bundle(self, path: Path, ca: trustme.CA | None = None) -> str:
        """Write a CA's certificate (the test CA's by default) as a PEM bundle at ``path``."""
        path.write_bytes((ca or self.ca).cert_pem.bytes())
        return str(path)


def make_certificates() -> Certificates:
    ca, unknown_ca = trustme.CA(), trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    leaves = {
        "good.test": ca.issue_cert("good.test"),
        "expired.test": ca.issue_cert(
            "expired.test", not_before=now - 10 * day, not_after=now - day
        ),
        "future.test": ca.issue_cert("future.test", not_before=now + day, not_after=now + 10 * day),
        "mismatch.test": ca.issue_cert("other.test"),
        "unknown-ca.test": unknown_ca.issue_cert("unknown-ca.test"),
    }
    by_host = {}
    for host, leaf in leaves.items():
        by_host[host] = _server_context()
        leaf.configure_cert(by_host[host])
    by_host["self-signed.test"] = _server_context()
    with trustme.Blob(_self_signed("self-signed.test")).tempfile() as pem:
        by_host["self-signed.test"].load_cert_chain(pem)
    return Certificates(ca=ca, unknown_ca=unknown_ca, by_host=by_host)


def _server_context() -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


def _self_signed(host: str) -> bytes:
    """A key and a certificate for ``host`` that is its own issuer (not a CA), as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem + certificate.public_bytes(serialization.Encoding.PEM)


class TLSServer:
    """The HTTPS server. ``await start()``, use ``url(path, host=...)``, ``await stop()``."""

    def __init__(self, certificates: Certificates) -> None:
        self._by_host = certificates.by_host
        self._runner: web.AppRunner | None = None
        self.port = 0
        #: Requests answered, by the ``Host`` header's name.
        self.requests: Counter[str] = Counter()

    def url(self, path: str, host: str = "good.test") -> str:
        return f"https://{host}:{self.port}{path}"

    async def start(self) -> None:
        # The good host's context serves a client that sends no name; it picks the rest.
        context = self._by_host["good.test"]
        context.sni_callback = self._pick
        app = web.Application()
        app.router.add_get("/ok", self._ok)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _pick(self, connection: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        context = self._by_host.get(name or "")
        if context is not None:
            connection.context = context

    async def _ok(self, request: Request) -> web.StreamResponse:
        self.requests[(request.host or "").rsplit(":", 1)[0]] += 1
        return web.Response(text="ok")


class _RawServer:
    """An asyncio server on 127.0.0.1 whose connections all end when it stops."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
                await self.serve(reader, writer)
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class HandshakeRefuser(_RawServer):
    """Reads the start of a ClientHello and answers with a fatal ``handshake_failure``."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)  # the ClientHello's record header
        writer.write(bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]))  # alert: fatal, 40
        await writer.drain()
        await asyncio.sleep(0.05)  # let the alert arrive before the connection ends


class ConnectProxy(_RawServer):
    """An HTTP proxy that only tunnels: ``CONNECT name.test:PORT`` opens a tunnel to
    127.0.0.1:PORT and pipes bytes both ways; with ``refuse`` set (403, say), every
    ``CONNECT`` gets that status instead."""

    def __init__(self, refuse: int | None = None) -> None:
        super().__init__()
        self.refuse = refuse
        #: The targets of the CONNECT requests received, in order.
        self.tunnels: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        host, _, port = target.rpartition(":")
        if method == "CONNECT":
            self.tunnels.append(target)
        status = self.refuse
        if method != "CONNECT" or not host.endswith(".test") or not port.isdigit():
            status = status or 405
        if status is not None:
            phrase = HTTPStatus(status).phrase
            writer.write(
                f"HTTP/1.1 {status} {phrase}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            return
        upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", int(port))
        self._writers.append(upstream)
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            async with asyncio.TaskGroup() as pipes:
                pipes.create_task(_pipe(reader, upstream))
                pipes.create_task(_pipe(upstream_reader, writer))
        finally:
            upstream.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()  # the other way ends too once the far side sees this close
