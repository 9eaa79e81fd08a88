"""The progress line of ``shoal fetch``, as a user sees it: plain lines in a log or a pipe,
and a line redrawn in place on a real terminal (a pseudo-terminal 80 columns wide)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import struct
import termios
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from tests.command import RESOLVE, environment, finish, lines, shoal, start
from tests.helpers import wait_until
from tests.servers import Misbehaving

#: A progress line written to a log: ``shoal: [0:01] 12/40 30%  ok 12  failed 0 …``.
_PLAIN = re.compile(r"^shoal: \[\d+:\d\d\] (?P<done>[\d,]+)(/~?[\d,]+| done)\b.*$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _count(line: str, label: str) -> int:
    found = re.search(rf"\b{label} ([\d,]+)", line)
    assert found is not None, f"no {label!r} in {line!r}"
    return int(found.group(1).replace(",", ""))


def _progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.split("\n") if line.startswith("shoal: [")]


def _slow_urls(server: Misbehaving, count: int, seconds: float = 0.1) -> list[str]:
    return [server.url(f"/delay?s={seconds}&n={n}", host=f"p{n % 4}.test") for n in range(count)]


async def test_progress_on_writes_plain_lines_to_a_pipe(server: Misbehaving) -> None:
    urls = _slow_urls(server, 24)
    done = await shoal(
        "fetch", *RESOLVE, "-c", "2", "--progress", "on", "--progress-interval", "0.1",
        stdin=lines(*urls),
    )  # fmt: skip
    assert done.code == 0, done.stderr
    shown = _progress_lines(done.stderr)
    assert len(shown) >= 3, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    assert done.stderr.endswith("\n")
    for line in shown:  # each a whole line of its own, with every field
        assert _PLAIN.match(line), line
        assert " ok " in line and " failed " in line and "req/s" in line and "ETA" in line
    assert len(done.records()) == 24


async def test_progress_auto_stays_quiet_in_a_pipe(server: Misbehaving) -> None:
    urls = _slow_urls(server, 8, seconds=0.05)
    done = await shoal(
        "fetch", *RESOLVE, "-c", "2", "--progress-interval", "0.05", stdin=lines(*urls)
    )
    assert done.code == 0, done.stderr
    assert _progress_lines(done.stderr) == []
    assert "shoal summary" in done.stderr


async def test_a_resumed_job_counts_the_whole_job(server: Misbehaving, tmp_path: Path) -> None:
    """After an interrupt, the line's done, ok and failed are all the job's, and what this
    run did is said apart."""
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*_slow_urls(server, 40, seconds=0.05)))
    output = tmp_path / "out.jsonl"
    command = ("fetch", *RESOLVE, str(source), "-o", str(output), "-c", "2")
    first = await start(*command)
    await wait_until(lambda: output.exists() and output.read_bytes().count(b"\n") >= 8, 20, "8")
    first.send_signal(signal.SIGINT)
    assert (await finish(first)).code == 130
    earlier = output.read_bytes().count(b"\n")
    rerun = await shoal(*command, "--progress", "on", "--progress-interval", "0.1")
    assert rerun.code == 0, rerun.stderr
    shown = _progress_lines(rerun.stderr)
    assert shown, rerun.stderr
    before: set[int] = set()  # what the earlier run finished, as each line has it
    for line in shown:
        found = _PLAIN.match(line)
        assert found is not None, line
        finished = int(found.group("done").replace(",", ""))
        assert finished == _count(line, "ok") + _count(line, "failed"), line
        this_run = re.search(r"([\d,]+) this run", line)
        assert this_run is not None, line
        before.add(finished - int(this_run.group(1).replace(",", "")))
    (earlier_run,) = before
    assert earlier_run >= earlier  # (its output may lag its journal by a batch)


# -- on a terminal ------------------------------------------------------------------------------


@contextlib.contextmanager
def _terminal(columns: int) -> Iterator[tuple[int, int]]:
    """A pseudo-terminal ``columns`` wide: (the side shoal writes to, the side read)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        yield follower, leader
    finally:
        os.close(leader)
        with contextlib.suppress(OSError):
            os.close(follower)


class _Screen:
    """What shoal wrote to the terminal, read as it comes."""

    def __init__(self, leader: int) -> None:
        self._leader = leader
        self.data = b""
        asyncio.get_running_loop().add_reader(leader, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self._leader, 65536)
        except OSError:  # the last writer has gone
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self._leader)
        self.data += chunk

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._leader)

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")

    def frames(self) -> list[str]:
        """Each drawing of the line, as the eye sees it (colours and cursor moves gone)."""
        before = self.text.split("shoal summary")[0]
        cut = re.split(r"\r|\x1b\[2K", before)
        return [_ANSI.sub("", part).strip("\n") for part in cut if "ok " in _ANSI.sub("", part)]


async def test_the_line_fits_80_columns_and_says_paused(
    server: Misbehaving, tmp_path: Path
) -> None:
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*_slow_urls(server, 400, seconds=0.2)))
    env = environment()
    del env["COLUMNS"]  # the terminal's own width
    with _terminal(80) as (follower, leader):
        process = await asyncio.create_subprocess_exec(
            *("python", "-m", "shoal", "fetch", *RESOLVE, str(source)),
            *("-o", str(tmp_path / "out.jsonl"), "-c", "4", "--dashboard", "0"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=follower,
            env=env,
        )
        os.close(follower)
        screen = _Screen(leader)
        try:
            await wait_until(lambda: "dashboard at" in screen.text, 20, "the dashboard's URL")
            found = re.search(r"dashboard at (http://\S+/)", _ANSI.sub("", screen.text))
            assert found is not None, screen.text
            base = found.group(1)
            await wait_until(lambda: "ETA " in "".join(screen.frames()), 20, "an ETA")
            async with aiohttp.ClientSession() as session:
                async with session.post(base + "api/pause") as response:
                    assert response.status == 200
                await wait_until(lambda: "paused" in screen.frames()[-1], 20, "'paused'")
                await asyncio.sleep(3)  # long enough for the rate to fall towards 0
                async with session.post(base + "api/stop") as response:
                    assert response.status == 200
            assert await asyncio.wait_for(process.wait(), 20) == 130
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await asyncio.sleep(0.2)
            screen.close()
    frames = screen.frames()
    assert len(frames) > 5, screen.text
    # A line of two rows would be redrawn from the row above each time; one row is cleared
    # from above once, when the line is taken away at the end.
    assert screen.text.split("shoal summary")[0].count("\x1b[1A") <= 1, screen.text
    for frame in frames:
        assert "\n" not in frame and len(frame) <= 80, repr(frame)
        assert not re.search(r"ETA \d{3,}", frame), frame  # no absurd estimate
    paused = [frame for frame in frames if "paused" in frame]
    assert paused and all("ETA" not in frame for frame in paused), frames


async def test_several_processes_write_one_plain_line(server: Misbehaving, tmp_path: Path) -> None:
    source = tmp_path / "urls.txt"
    source.write_bytes(lines(*_slow_urls(server, 24)))
    done = await shoal(
        "fetch", *RESOLVE, str(source), "-o", str(tmp_path / "out.jsonl"), "-p", "2",
        "-c", "2", "--progress", "on", "--progress-interval", "0.1", within_s=40,
    )  # fmt: skip
    assert done.code == 0, done.stderr
    shown = _progress_lines(done.stderr)
    assert shown and all(_PLAIN.match(line) for line in shown), done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
