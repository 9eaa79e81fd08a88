"""The files a job reads and writes, checked before any of them is opened for writing: no
output, journal, body folder or web archive may be the input or another of them (one
would destroy the other), and each one still to be made needs a folder to be made in.

Two names are the same file when they reach the same file (device and inode: symlinks,
hard links, ``./a`` and ``a``) or, for files not made yet, the same resolved path.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import click

#: How a file is known: ``("file", device, inode)`` when it exists, else
#: ``("path", resolved path)``.
Identity = tuple[str, int, int] | tuple[str, str]


@dataclass(frozen=True, slots=True)
class Place:
    """One of a job's places: the option that names it, the files it is, and (a web
    archive's) the pattern of the files it will make."""

    label: str
    paths: tuple[str, ...]
    #: Resolved paths it may make later (``PREFIX-00001.warc.gz``).
    pattern: re.Pattern[str] | None = None
    #: A stream (stdin or stdout): only the file it is, if any, counts.
    descriptor: int | None = None


def input_place(label: str, path: str) -> Place:
    """The job's input (``-``: stdin, which counts when it is a file)."""
    if path == "-":
        return Place(f"{label} (stdin)", (), descriptor=0)
    return Place(label, (path,))


def output_place(path: str) -> Place:
    if path == "-":
        return Place("-o/--output (stdout)", (), descriptor=1)
    return Place("-o/--output", (path,))


def journal_place(path: str, given: bool) -> Place:
    label = "--job" if given else "the journal beside -o/--output (--job moves it)"
    return Place(label, tuple(path + suffix for suffix in ("", "-wal", "-shm", ".lock")))


def bodies_place(folder: str) -> Place:
    return Place("--save-bodies", (folder,))


def warc_place(prefix: str) -> Place:
    # PREFIX-00000.warc.gz and PREFIX.cdxj; a worker process's or a shared job's worker's
    # own are PREFIX.PART-00000.warc.gz and PREFIX.PART.cdxj.
    real = re.escape(os.path.realpath(prefix))
    pattern = re.compile(rf"{real}(\.[^/]+)?(-\d+\.warc\.gz|\.cdxj)")
    made = glob.glob(glob.escape(prefix) + "*.warc.gz")
    return Place("--warc", (prefix + ".cdxj", *made), pattern=pattern)


def _identity(path: str) -> Identity | None:
    """How ``path`` is known; ``None`` for what is not a file's bytes (a device such as
    ``/dev/null``, a pipe: reading one and writing another destroys nothing)."""
    try:
        found = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return _of(found)


def _of(found: os.stat_result) -> Identity | None:
    if stat.S_ISREG(found.st_mode) or stat.S_ISDIR(found.st_mode):
        return ("file", found.st_dev, found.st_ino)
    return None


def _identities(place: Place) -> Iterator[tuple[Identity, str]]:
    if place.descriptor is not None:
        try:
            known = _of(os.fstat(place.descriptor))
        except OSError:
            known = None
        if known is not None:
            yield known, "<stdin>" if place.descriptor == 0 else "<stdout>"
    for path in place.paths:
        known = _identity(path)
        if known is not None:
            yield known, path


def _clash(first: Place, second: Place) -> str | None:
    """The file ``first`` and ``second`` both name, if any."""
    mine, theirs = list(_identities(first)), list(_identities(second))
    for identity, path in mine:
        if any(identity == other for other, _ in theirs):
            return path
    for place, named in ((first, theirs), (second, mine)):
        if place.pattern is None:
            continue
        for _, path in named:  # a file the archive will make
            if not path.startswith("<") and place.pattern.fullmatch(os.path.realpath(path)):
                return path
    return None


def check_places(places: list[Place]) -> None:
    """Refuse (a usage error naming both) two places that are one file."""
    for index, first in enumerate(places):
        for second in places[index + 1 :]:
            path = _clash(first, second)
            if path is not None:
                raise click.UsageError(
                    f"{first.label} and {second.label} name the same file ({path}):"
                    " writing one would destroy the other"
                )


def check_creatable(label: str, path: str) -> None:
    """Refuse (a usage error naming the option) a file that does not exist and cannot be
    made: its folder is missing, is not a folder, or cannot be written."""
    if os.path.lexists(path):
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        reason = f"no such directory {folder}"
    elif not os.path.isdir(folder):
        reason = f"{folder} is not a directory"
    elif not os.access(folder, os.W_OK | os.X_OK):
        reason = f"directory {folder} is not writable"
    else:
        return
    raise click.BadParameter(f"cannot create {path}: {reason}", param_hint=f"'{label}'")


def check_job_places(
    input_place_: Place | None,
    output: str,
    journal: str | None,
    *,
    journal_given: bool,
    bodies: str | None = None,
    warc: str | None = None,
) -> None:
    """Refuse, before anything is written, a job whose places clash or cannot be made
    (``journal``: ``None`` when temporary or kept in a shared store)."""
    places = [output_place(output)]
    if journal is not None:
        places.append(journal_place(journal, journal_given))
    if bodies is not None:
        places.append(bodies_place(bodies))
    if warc is not None:
        places.append(warc_place(warc))
    if input_place_ is not None:
        places.append(input_place_)
    check_places(places)
    if output != "-":
        check_creatable("-o/--output", output)
    if journal is not None:
        check_creatable("--job" if journal_given else "-o/--output", journal)
