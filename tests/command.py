"""Running the ``shoal`` command from a test: a real process started with asyncio, so a
server on the test's event loop keeps serving while the test waits for the command.

Host names end in ``.test`` and ``RESOLVE`` (``--resolve '*.test:127.0.0.1'``) maps them to
the servers. The command sees the caller's environment without its ``SHOAL_*`` options.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import sys
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.environments import inherited
from tests.servers import Misbehaving

SHOAL = (sys.executable, "-m", "shoal")
RESOLVE = ("--resolve", "*.test:127.0.0.1")


def environment(**extra: str) -> dict[str, str]:
    """The caller's environment without its ``SHOAL_*`` options (``tests/environments.py``)."""
    env = inherited()
    env["COLUMNS"] = "400"  # rich wraps messages at the width: keep each on one line
    env.update(extra)
    return env


@dataclass(frozen=True, slots=True)
class Finished:
    code: int
    stdout: bytes
    stderr: str

    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stdout.splitlines()]


async def start(
    *args: str,
    stdin: int = asyncio.subprocess.PIPE,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *SHOAL,
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else environment(),
        cwd=cwd,
    )


async def finish(
    process: asyncio.subprocess.Process, data: bytes | None = None, within_s: float = 20
) -> Finished:
    try:
        out, err = await asyncio.wait_for(process.communicate(data), within_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"shoal did not finish within {within_s} s") from None
    assert process.returncode is not None
    return Finished(process.returncode, out, err.decode())


async def shoal(
    *args: str,
    stdin: bytes = b"",
    within_s: float = 20,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Finished:
    return await finish(await start(*args, env=env, cwd=cwd), stdin, within_s)


async def shoal_on_terminal(
    *args: str, stdin: bytes = b"", within_s: float = 20, columns: int = 400
) -> Finished:
    """``shoal(...)`` with stderr on a real terminal: a pty ``columns`` wide (``TERM`` set
    as a terminal would have it); stdin and stdout stay pipes. What the command wrote to
    the terminal comes back as ``stderr``."""
    leader, follower = os.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        process = await asyncio.create_subprocess_exec(
            *SHOAL,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=follower,
            env=environment(TERM="xterm", COLUMNS=str(columns)),
        )
        os.close(follower)
        follower = -1
        # Read the terminal all along (a full pty would block the command); the read ends
        # when the command's end closes the last copy of the follower (EIO).
        screen = asyncio.create_task(asyncio.to_thread(_read_terminal, leader))
        try:
            out, _ = await asyncio.wait_for(process.communicate(stdin), within_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"shoal did not finish within {within_s} s") from None
        finally:
            written = await screen
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert process.returncode is not None
    return Finished(process.returncode, out, written.decode(errors="replace"))


def _read_terminal(leader: int, limit: int = 64 << 20) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: no process holds the terminal any more
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def lines(*items: str) -> bytes:
    return ("\n".join(items) + "\n").encode()


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def ok_urls(server: Misbehaving, count: int, prefix: str = "u") -> list[str]:
    """``count`` distinct quick URLs; each has its own path, so hits count per URL."""
    return [server.url(f"/flaky/{prefix}{n}?fail=0", host=f"h{n % 3}.test") for n in range(count)]
