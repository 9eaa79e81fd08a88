"""Response bodies on disk, content-addressed by SHA-256 (``--save-bodies DIR``).

Layout: ``DIR/ab/cd/abcd…`` (the body's SHA-256 in hex, under its first two and next two
hex digits), the decoded bytes exactly as the record's ``sha256`` describes them; a record
names its file in ``body_path``, relative to ``DIR``. A body is streamed to a temporary
file in ``DIR/.partial`` as it arrives (never held whole in memory) and moved into place
only once its request is final, so a retried attempt leaves nothing behind and identical
bodies are stored once. A crash can leave files in ``.partial`` (removed by the next run)
or a stored body whose record was not committed yet (the request is fetched again and
finds its file already there).

All file work runs on the store's own thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from shoal.errors import OutputError

T = TypeVar("T")
PARTIAL = ".partial"


def _running(name: str) -> bool:
    """Whether ``name`` is the id of a running process (whose temporary files to spare)."""
    if not name.isdigit():
        return False
    try:
        os.kill(int(name), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BodyStore:
    """The body folder of a run."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        # One temporary folder per process: the workers of --processes share DIR.
        self._partial = os.path.join(self.root, PARTIAL, str(os.getpid()))
        self._names = itertools.count()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="shoal-bodies")

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def open(self) -> None:
        """Create the folder and clear what an interrupted run left half written."""
        await self._call(self._open)

    def _open(self) -> None:
        try:
            partial = os.path.dirname(self._partial)
            os.makedirs(partial, exist_ok=True)
            for name in os.listdir(partial):
                if not _running(name) or name == str(os.getpid()):
                    shutil.rmtree(os.path.join(partial, name), ignore_errors=True)
            os.makedirs(self._partial, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use body folder {self.root}: {exc.strerror}") from exc

    def new_file(self) -> str:
        """A fresh temporary file name (nothing is created yet)."""
        return os.path.join(self._partial, str(next(self._names)))

    async def write(self, path: str, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` to the temporary file ``path`` (created on first use)."""
        await self._call(self._write, path, chunks)

    def _write(self, path: str, chunks: Sequence[bytes]) -> None:
        try:
            with open(path, "ab") as file:
                file.writelines(chunks)
        except OSError as exc:
            raise OutputError(f"cannot write body to {self.root}: {exc.strerror}") from exc

    async def keep(self, path: str, sha256: str) -> str:
        """Move a finished body into place; its path relative to the folder."""
        return await self._call(self._keep, path, sha256)

    def _keep(self, path: str, sha256: str) -> str:
        relative = os.path.join(sha256[:2], sha256[2:4], sha256)
        final = os.path.join(self.root, relative)
        try:
            if os.path.exists(final):  # the same bytes are stored already
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                if not os.path.exists(path):
                    open(path, "wb").close()  # an empty body
                os.replace(path, final)
        except OSError as exc:
            raise OutputError(f"cannot store body in {self.root}: {exc.strerror}") from exc
        return relative

    async def discard(self, path: str) -> None:
        """Forget a temporary body (its attempt will be retried)."""
        await self._call(self.forget, path)

    def forget(self, path: str) -> None:
        """Remove a temporary body at once (on an attempt's failure or cancellation; a write
        still running on the store's thread then ends on an unlinked file)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
