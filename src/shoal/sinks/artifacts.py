"""What a job keeps of its responses besides their records: their bodies on disk
(``save_bodies``, :mod:`.bodies`) and the web archive of their exchanges (``warc``,
:mod:`.warc`).

One :class:`Artifacts` object opens both (with the engine), receives each response's
saved body and capture from the workers (kept when the response is final, dropped when it
is retried), commits the captures of a batch just before the journal commits the batch
(the archive's end goes into the same commit), and closes both (each even when the other
fails).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from shoal.capture import Budget
from shoal.errors import ConfigError
from shoal.fetched import Fetched
from shoal.sinks.bodies import BodyStore
from shoal.sinks.spool import Spool
from shoal.store.store import ARCHIVE_POSITIONS, SinkMark

if TYPE_CHECKING:
    from shoal.sinks.warc import WarcArchive


def warc_module() -> ModuleType:
    """The archive's module (its libraries come with the ``warc`` extra)."""
    try:
        from shoal.sinks import warc
    except ImportError as exc:
        raise ConfigError(
            "warc", f"needs the warc extra (pip install 'shoal[warc]'): {exc}"
        ) from exc
    return warc


class Artifacts:
    """The bodies folder and the web archive of an engine (either may be absent).

    Built with the engine's settings (the archive's module is imported then: a missing
    extra is a usage error, not a failure mid-job); :meth:`open` with the engine,
    :meth:`start_run` and :meth:`end_run` around each run, :meth:`close` with the engine.
    """

    def __init__(
        self,
        save_bodies: str | None,
        warc: str | None,
        *,
        warc_max_size: int,
        info: Mapping[str, str],
    ) -> None:
        if warc_max_size < 1:
            raise ConfigError("warc_max_size", "must be at least 1 byte")
        self._save_bodies = save_bodies
        self._info = dict(info)  # for the archive's warcinfo records
        self._new_archive: Callable[..., WarcArchive] | None = None
        if warc is not None:
            archive_type = warc_module().WarcArchive
            self._new_archive = functools.partial(archive_type, warc, max_size=warc_max_size)
        #: What captures waiting to be archived may hold in memory, across all workers.
        self.budget = Budget()
        self.bodies: BodyStore | None = None
        self._archive: WarcArchive | None = None
        #: The archive's end, as the journal keeps it among the sink mark's positions.
        self._archived: dict[str, int] = {}

    @property
    def capturing(self) -> bool:
        """Whether responses' exchanges are captured (for the archive)."""
        return self._new_archive is not None

    @property
    def spool(self) -> Spool | None:
        """Where the fetcher spools the bytes of the captures to archive."""
        return None if self._archive is None else self._archive.spool

    # -- the engine's lifetime ---------------------------------------------------------------

    async def open(self) -> None:
        """Open the bodies folder, and make the archive."""
        if self._save_bodies is not None:
            bodies = BodyStore(self._save_bodies)
            try:
                await bodies.open()
            except BaseException:
                bodies.close()
                raise
            self.bodies = bodies
        if self._new_archive is not None:
            self._archive = self._new_archive(info=self._info)

    def close(self) -> None:
        """Release the bodies folder and the archive's spool: both, even when one fails."""
        bodies, archive = self.bodies, self._archive
        self.bodies = self._archive = None
        try:
            if bodies is not None:
                bodies.close()
        finally:
            if archive is not None:
                archive.close()

    # -- a run -----------------------------------------------------------------------------

    async def start_run(
        self, positions: Mapping[str, int], *, resumed: bool, run_name: str | None
    ) -> None:
        """Open the archive at the end the journal committed (``positions``: the sink
        mark's, of a ``resumed`` job); without an archive, keep the archive's positions
        for a later run with it again."""
        self.budget.held = 0  # what an aborted run held is gone with it
        if self._archive is not None:
            self._archived = await self._archive.open(positions if resumed else None, run_name)
        else:  # kept for a later run with the archive again
            self._archived = {
                name: value
                for name, value in positions.items()
                if name.startswith(ARCHIVE_POSITIONS)
            }

    async def end_run(self) -> None:
        """Close the archive's files at the end of a run (its spool stays, for the next)."""
        if self._archive is not None:
            await self._archive.finish()

    @property
    def archived(self) -> bool:
        """Whether the journal's mark holds an archive's end."""
        return bool(self._archived)

    def with_archive(self, mark: SinkMark) -> SinkMark:
        """``mark`` with the archive's end added (committed with it, see :mod:`.warc`)."""
        if not self._archived:
            return mark
        return SinkMark(mark.done_seq, {**mark.positions, **self._archived})

    # -- each response ---------------------------------------------------------------------

    def unsettled(self, result: object) -> bool:
        """Whether ``result`` holds a saved body or a capture for :meth:`settle` (asked
        first, so a response with neither costs no coroutine)."""
        return isinstance(result, Fetched) and (
            result.body_file is not None or result.capture is not None
        )

    async def settle(self, result: object, *, final: bool) -> None:
        """Keep a final response's saved body (in place, by its SHA-256) or drop it; and
        forget the capture of an attempt that will be retried (only the final one is
        archived)."""
        if not isinstance(result, Fetched):
            return
        if result.body_file is not None:
            await self._settle_body(result, final=final)
        if result.capture is not None and not final:
            await self._drop_capture(result)

    async def _settle_body(self, result: Fetched, *, final: bool) -> None:
        bodies, path = self.bodies, result.body_file
        assert bodies is not None and path is not None
        result.body_file = None
        if final and result.sha256 is not None:
            result.body_path = await bodies.keep(path, result.sha256)
        else:
            await bodies.discard(path)

    async def _drop_capture(self, result: Fetched) -> None:
        capture, archive = result.capture, self._archive
        assert capture is not None and archive is not None
        result.capture = None
        self.budget.release(capture)
        for path in capture.spools:
            await archive.spool.discard(path)

    async def commit(self, finals: Sequence[object]) -> None:
        """Archive the captures of a batch's final responses, just before the journal
        commits the batch (with the archive's new end: :meth:`with_archive`)."""
        archive = self._archive
        if archive is None:
            return
        responses = [result for result in finals if isinstance(result, Fetched)]
        captures = [result.capture for result in responses if result.capture is not None]
        self._archived = await archive.append(responses)
        for capture in captures:
            self.budget.release(capture)
