"""A raw HTTP server on 127.0.0.1 that answers with exact bytes, for the wire transport's
framing tests: each request (its head, and a body of its Content-Length) gets the reply
``answer`` makes of it, written in the pieces given, and the server counts the
connections it accepted and keeps the bytes of each request."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Reply:
    """What the server writes for one request: ``pieces`` one after another (each its own
    write and a pass of the loop), then the connection closed if ``close``. ``drop``: close
    at once without a byte (as a server closing an idle keep-alive connection)."""

    pieces: list[bytes] = field(default_factory=list)
    close: bool = False
    drop: bool = False
    #: Wait this long before answering, and between pieces (seconds).
    delay_s: float = 0.0
    gap_s: float = 0.0


def reply(data: bytes, *, close: bool = False) -> Reply:
    return Reply([data], close=close)


#: ``answer(connection number, request number on it, request bytes)``.
Answer = Callable[[int, int, bytes], Reply]


class RawServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        #: Connections open at once, at most.
        self.most_open = 0
        self._open = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stop = asyncio.Event()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._stop.set()
        for writer in list(self._writers):
            writer.close()  # its reader sees the end, and its task returns
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _stopped(self, wait_s: float) -> bool:
        """Wait ``wait_s`` seconds (a pass of the loop at least); whether the server stops."""
        if wait_s <= 0:
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait_s)
        return self._stop.is_set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        number = self.connections
        self.connections += 1
        self._open += 1
        self.most_open = max(self.most_open, self._open)
        try:
            index = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                body = b""
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        body = await reader.readexactly(int(line.split(b":")[1]))
                self.requests.append(head + body)
                answer = self.answer(number, index, head + body)
                index += 1
                if answer.delay_s and await self._stopped(answer.delay_s):
                    return
                if answer.drop:
                    return
                for piece in answer.pieces:
                    writer.write(piece)
                    await writer.drain()
                    if await self._stopped(answer.gap_s):
                        return
                if answer.close:
                    return
        finally:
            self._open -= 1
            writer.close()
            self._tasks.discard(task)
            self._writers.discard(writer)
