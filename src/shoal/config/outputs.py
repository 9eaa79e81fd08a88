"""What an engine writes besides its records: the fields of each record, response bodies
on disk, a web archive, and the bodies kept in memory on results."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from shoal.errors import ConfigError

#: A WARC file is rolled over to the next once it reaches this size (``--warc-max-size``).
DEFAULT_WARC_MAX_SIZE = 1024**3

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Records:
    """What each JSON record holds besides the fields it always has.

    ``keep_headers`` names the response headers a record keeps in its ``headers`` object
    (matched without regard to case, kept under lower-case names), or is ``"all"`` for
    every header of the response; by default none, and records have no ``headers``.
    """

    keep_headers: tuple[str, ...] | Literal["all"] = ()

    def __post_init__(self) -> None:
        names = self.keep_headers
        if names == "all":
            return
        if isinstance(names, str) or not all(isinstance(name, str) for name in names):
            raise ConfigError("keep_headers", "must be header names or 'all'")
        for name in names:
            if not _HEADER_NAME.fullmatch(name):
                raise ConfigError("keep_headers", f"{name!r} is not a header name")
        lowered = tuple(dict.fromkeys(name.lower() for name in names))
        object.__setattr__(self, "keep_headers", lowered)

    def kept(self, headers: Mapping[str, str]) -> dict[str, str | list[str]] | None:
        """The record's ``headers`` object for a response's ``headers`` (a multidict:
        a header sent more than once keeps each value, in a list); ``None`` when no
        header is kept."""
        names = self.keep_headers
        if not names:
            return None
        kept: dict[str, str | list[str]] = {}
        for name, value in headers.items():
            key = name.lower()
            if names != "all" and key not in names:
                continue
            before = kept.get(key)
            if before is None:
                kept[key] = value
            elif isinstance(before, list):
                before.append(value)
            else:
                kept[key] = [before, value]
        return kept


@dataclass(frozen=True, slots=True, kw_only=True)
class Outputs:
    """What a job writes besides its JSON records (see docs/outputs.md).

    ``records`` says what each record holds (:class:`Records`). ``bodies`` is a folder
    that keeps each final response's body, named by its SHA-256 (the record's
    ``body_path``); ``warc`` a path prefix: each final exchange is archived in
    ``PREFIX-NNNNN.warc.gz`` (WARC/1.1), indexed in ``PREFIX.cdxj``, the next file started
    once one reaches ``warc_max_size`` bytes. ``keep_body`` keeps each final response's
    decoded body in memory on its :class:`~shoal.Result` (``result.body``, ``text()``,
    ``json()``), for library callers; it is never part of a record.
    """

    records: Records = field(default_factory=lambda: Records())
    bodies: str | None = None
    warc: str | None = None
    warc_max_size: int = DEFAULT_WARC_MAX_SIZE
    keep_body: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.records, Records):
            raise ConfigError("records", "must be a Records")
        if self.warc_max_size < 1:
            raise ConfigError("warc_max_size", "must be at least 1 byte")
