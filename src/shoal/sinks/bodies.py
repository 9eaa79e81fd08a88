"""Response bodies on disk, content-addressed by SHA-256 (``--save-bodies DIR``).

Layout: ``DIR/ab/cd/abcd…`` (the body's SHA-256 in hex, under its first two and next two
hex digits), the decoded bytes exactly as the record's ``sha256`` describes them; a record
names its file in ``body_path``, relative to ``DIR``. A body is streamed to a temporary
file in ``DIR/.partial`` as it arrives (never held whole in memory) and moved into place
only once its request is final, so a retried attempt leaves nothing behind and identical
bodies are stored once. A crash can leave files in ``.partial`` (removed by the next run)
or a stored body whose record was not committed yet (the request is fetched again and
finds its file already there).
"""

from __future__ import annotations

import contextlib
import os

from shoal.errors import OutputError
from shoal.sinks.spool import Spool

PARTIAL = ".partial"


class BodyStore(Spool):
    """The body folder of a run; its temporary files are the bodies being received."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        super().__init__(os.path.join(self.root, PARTIAL), "body folder")

    async def keep(self, path: str, sha256: str) -> str:
        """Move a finished body into place; its path relative to the folder."""
        return await self.call(self._keep, path, sha256)

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
