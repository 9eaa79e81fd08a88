"""The wire transport's connections: opened through the resolver and happy eyeballs, kept
idle per key (scheme, host, port and TLS setting), at most ``per_host`` per key and
``total`` in all.

An idle connection is taken last-in first-out (the one most likely still open); one the
server closed while idle drops out of the pool when it closes. When every place is taken,
an acquirer waits for a connection to be returned or closed; an idle connection of another
key is closed to make room for a new one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass

import aiohappyeyeballs
from aiohttp.abc import AbstractResolver

from shoal.fetching.transport import TransportFailure
from shoal.fetching.wire import errors
from shoal.fetching.wire.connection import WireConnection

#: How long happy eyeballs waits on one address before it tries the next.
_HAPPY_EYEBALLS_DELAY_S = 0.25


@dataclass(frozen=True, slots=True)
class Key:
    """What a connection goes to: requests of one key may share connections."""

    secure: bool
    host: str
    port: int


class Pool:
    """The connections of one transport."""

    def __init__(
        self,
        *,
        resolver: AbstractResolver | None,
        tls: ssl.SSLContext | bool,
        per_host: int,
        total: int,
    ) -> None:
        self._resolver = resolver
        self._tls = tls
        self._context: ssl.SSLContext | None = None
        self.per_host = per_host
        self.total = total
        self._idle: dict[Key, list[WireConnection]] = {}
        #: Open (or opening) connections per key, and in all.
        self._open: dict[Key, int] = {}
        self._opened = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._closing = False

    async def acquire(self, key: Key, *, fresh: bool = False) -> tuple[WireConnection, bool]:
        """A connection for ``key`` and whether it was used before (``fresh``: a new one)."""
        while True:
            idle = self._idle.get(key)
            while idle and not fresh:
                connection = idle.pop()
                if not connection.closed:
                    return connection, True
            if self._open.get(key, 0) < self.per_host and (
                self._opened < self.total or self._evict(key)
            ):
                return await self._connect(key), False
            if fresh and idle:
                self._drop(idle.pop(0))  # its place goes to the new connection
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def release(self, connection: WireConnection) -> None:
        """Take ``connection`` back after an exchange: idle if it may serve another, closed
        otherwise."""
        connection.release()
        key = connection.key
        if connection.reusable() and not self._closing and isinstance(key, Key):
            self._idle.setdefault(key, []).append(connection)
            self._wake()
        else:
            connection.close()

    async def close(self) -> None:
        self._closing = True
        for idle in list(self._idle.values()):
            for connection in list(idle):
                connection.close()
        self._idle.clear()

    @property
    def idle(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    # -- inside ----------------------------------------------------------------------------

    def _evict(self, key: Key) -> bool:
        """Close an idle connection of another key to make room; whether one was."""
        for other, idle in self._idle.items():
            if other != key and idle:
                self._drop(idle.pop(0))
                return True
        return False

    def _drop(self, connection: WireConnection) -> None:
        """Close an idle connection taken out of the pool, and count it closed now."""
        connection.on_close = None
        connection.close()
        assert isinstance(connection.key, Key)
        self._count(connection.key, -1)

    def _forget(self, connection: WireConnection) -> None:
        key = connection.key
        assert isinstance(key, Key)
        idle = self._idle.get(key)
        if idle and connection in idle:
            idle.remove(connection)
        self._count(key, -1)
        self._wake()

    def _count(self, key: Key, step: int) -> None:
        count = self._open.get(key, 0) + step
        if count:
            self._open[key] = count
        else:
            self._open.pop(key, None)
        self._opened += step

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, key: Key) -> WireConnection:
        self._count(key, 1)
        try:
            connection = await self._open_connection(key)
        except BaseException:
            self._count(key, -1)
            self._wake()
            raise
        connection.on_close = self._forget
        if connection.closed:  # it closed before the pool knew it
            connection.on_close = None
            self._forget(connection)
            raise errors.lost(None, early=True)
        return connection

    async def _open_connection(self, key: Key) -> WireConnection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | bool = self._tls if key.secure else True
        try:
            infos = await self._addresses(key)
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY_S, interleave=1, loop=loop
            )
            try:
                _, connection = await loop.create_connection(
                    lambda: WireConnection(loop, key),
                    sock=sock,
                    ssl=self._tls_context() if key.secure else None,
                    server_hostname=key.host if key.secure and not _is_ip(key.host) else None,
                )
            except BaseException:
                sock.close()
                raise
        except TransportFailure:
            raise
        except OSError as exc:
            error = errors.connect_failed(
                exc, secure=key.secure, host=key.host, port=key.port, tls=tls
            )
            raise TransportFailure(error) from exc
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        context = self._context
        if context is None:
            if isinstance(self._tls, ssl.SSLContext):
                context = self._tls
            elif self._tls:
                context = ssl.create_default_context()
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        return context

    async def _addresses(
        self, key: Key
    ) -> list[tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]]:
        host = key.host
        if _is_ip(host):
            found = [(host, int(socket.AF_INET6 if ":" in host else socket.AF_INET))]
        elif self._resolver is not None:
            results = await self._resolver.resolve(host, key.port, socket.AF_UNSPEC)
            found = [(result["host"], int(result["family"])) for result in results]
        else:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, key.port, type=socket.SOCK_STREAM)
            found = [(str(info[4][0]), int(info[0])) for info in infos]
        addresses: list[tuple[int, int, int, str, tuple[str, int] | tuple[str, int, int, int]]]
        addresses = []
        for address, family in dict.fromkeys(found):
            where: tuple[str, int] | tuple[str, int, int, int] = (address, key.port)
            if family == socket.AF_INET6:
                where = (address, key.port, 0, 0)
            addresses.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", where))
        if not addresses:
            raise OSError(socket.EAI_NONAME, f"no address for {host!r}")
        return addresses


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
