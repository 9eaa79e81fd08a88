"""What the command line says when a job cannot start or stops early: an input it cannot
read (and what to write when it was meant as a URL), a fault, a closed output pipe, and a
shared job's settings that differ from a run's."""

from __future__ import annotations

import contextlib
import os
import sys

import click
import orjson
from rich.console import Console

from shoal.cli.options import setting_flag
from shoal.errors import SettingsMismatch
from shoal.sources.lines import url_hint


def unreadable(path: str, exc: OSError) -> str:
    """Why the input cannot be read, with what to write when it was meant as a URL."""
    message = f"cannot read {path}: {exc.strerror}"
    hint = url_hint(path) if isinstance(exc, FileNotFoundError) else None
    return message if hint is None else f"{message} ({hint})"


def after_fault(journal: str | None, *, shared: bool) -> str:
    """What a stop on a fault leaves behind, and what to do (``journal``: ``None`` when
    temporary; ``shared``: the job is kept in a shared store)."""
    if shared or (journal is not None and os.path.exists(journal)):
        return "The journal is intact: fix the cause and run the same command to resume."
    if journal is None:
        return "The journal was temporary (no -o file, no --job): the same command starts over."
    return "No journal was made: fix the cause and run the command again."


def closed_pipe(journal: str | None, *, quiet: bool, console: Console) -> None:
    """End quietly, as Unix tools do, when the output pipe's reader has gone: stdout goes
    to /dev/null (so that nothing complains when it is flushed at exit), and one line says
    where the progress is when a journal (not a temporary one) keeps it."""
    silence_stdout()
    if not quiet and journal is not None and os.path.exists(journal):
        console.print(
            f"shoal: output closed; the journal {journal} holds the progress"
            " (the same command resumes)",
            markup=False,
            highlight=False,
        )


def silence_stdout() -> None:
    """Point stdout at /dev/null: what is left in its buffer is dropped at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def mismatch_message(exc: SettingsMismatch) -> str:
    """A shared job's settings that differ from this worker's, named by their options."""
    ctx = click.get_current_context(silent=True)
    command = None if ctx is None else ctx.command.name
    shown = "; ".join(
        f"{setting_flag(path, command)} is {_value(mine)} here but {_value(theirs)} in job"
        f" {exc.job!r}"
        for path, mine, theirs in exc.differences
    )
    return f"{shown}: every worker of a job applies the job's settings"


def _value(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, list) and all(isinstance(item, str | int) for item in value):
        return ",".join(str(item) for item in value) or "none"
    return orjson.dumps(value).decode()
