"""Temporary files for data that arrives before it may be kept: bodies, and responses for
the archive, while their request is not final yet.

A spool is a folder with one subfolder per process (the workers of ``--processes`` share
it, and so may the workers of a shared job on several machines), named by machine and
process id; opening a spool removes the subfolders of this machine's processes that are
gone, which is what a crash leaves behind. All file work runs on the spool's own thread,
never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from shoal.errors import OutputError

T = TypeVar("T")


def _own_name() -> str:
    """This process's subfolder: the machine's name and the process id, so that processes
    of several machines may share a spool's folder (on a shared file system)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _spared(name: str) -> bool:
    """Whether the subfolder ``name`` belongs to a process still running, or to another
    machine (whose processes this one cannot see: it clears its own)."""
    machine, _, pid = name.rpartition("-")
    if not machine:  # a bare process id: this machine's (as earlier versions named it)
        pid = name
    elif machine != socket.gethostname():
        return True
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """Temporary files under ``folder``/MACHINE-PID, written on a thread of their own."""

    def __init__(self, folder: str, what: str) -> None:
        self.folder = os.path.abspath(folder)
        self._what = what  # names the spool's owner in errors
        self._own = os.path.join(self.folder, _own_name())
        self._names = itertools.count()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="shoal-spool")

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function`` on the spool's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def open(self) -> None:
        """Create the folder and clear what an interrupted run left half written."""
        await self.call(self._open)

    def _open(self) -> None:
        try:
            os.makedirs(self.folder, exist_ok=True)
            for name in os.listdir(self.folder):
                if not _spared(name) or name == _own_name():
                    shutil.rmtree(os.path.join(self.folder, name), ignore_errors=True)
            os.makedirs(self._own, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use {self._what} {self.folder}: {exc.strerror}") from exc

    def new_file(self) -> str:
        """A fresh temporary file name (nothing is created yet)."""
        return os.path.join(self._own, str(next(self._names)))

    async def write(self, path: str, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` to the temporary file ``path`` (created on first use)."""
        await self.call(self.append, path, chunks)

    def append(self, path: str, chunks: Sequence[bytes]) -> None:
        """:meth:`write`, on the calling thread."""
        try:
            with open(path, "ab") as file:
                file.writelines(chunks)
        except OSError as exc:
            raise OutputError(
                f"cannot write to {self._what} {self.folder}: {exc.strerror}"
            ) from exc

    async def discard(self, path: str) -> None:
        """Remove a temporary file on the spool's thread (after writes queued before)."""
        await self.call(self.forget, path)

    def forget(self, path: str) -> None:
        """Remove a temporary file at once (on an attempt's failure or cancellation; a write
        still running on the spool's thread then ends on an unlinked file)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def close(self) -> None:
        """Wait for the writes queued, then remove the process's temporary files: what is
        left at the end belongs to attempts that were cut short."""
        self._executor.shutdown(wait=True)
        shutil.rmtree(self._own, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)  # when no other process uses it
