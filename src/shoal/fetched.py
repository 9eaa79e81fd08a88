"""A fetch's result as the engine carries it: the public :class:`shoal.Result` and what the
stages after the fetch still have to settle (internal, not part of the public surface)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.capture import Capture
from shoal.result import Result


@dataclass(slots=True, kw_only=True)
class Fetched(Result):
    """A :class:`Result` made by the fetcher, with the files and bytes it leaves to the
    workers and the committer: both are ``None`` again once they are settled."""

    #: The body's temporary file while its request is not final.
    body_file: str | None = field(default=None, repr=False)
    #: The exchanges on the wire, until they are archived.
    capture: Capture | None = field(default=None, repr=False)
