"""``-v``: a debug log on stderr of what each attempt did, from the ``shoal`` logger.

The records come from Python's logging (the library logs under ``shoal``; the engine's
workers log one line per attempt at DEBUG). ``-v`` sets that logger to DEBUG and prints
its records through the console the progress line is drawn on, so a log line appears
above the live line instead of through it.
"""

from __future__ import annotations

import logging
from typing import Any

import click
from rich.console import Console

LOGGER = "shoal"


class _ConsoleHandler(logging.Handler):
    """Prints each record as one line on a rich console (stderr until told another)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.console = Console(stderr=True, soft_wrap=True, emoji=False)
        self.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never fail the run
            self.handleError(record)


_handler: _ConsoleHandler | None = None


def _enable(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    global _handler
    if not value or _handler is not None:
        return
    handler = _handler = _ConsoleHandler()
    logger = logging.getLogger(LOGGER)
    previous, propagates = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    def disable() -> None:
        global _handler
        logger.removeHandler(handler)
        logger.setLevel(previous)
        logger.propagate = propagates
        _handler = None

    ctx.call_on_close(disable)


def use_console(console: Console) -> None:
    """Print the log on ``console`` (the one the progress line is drawn on), if ``-v``."""
    if _handler is not None:
        _handler.console = console


VERBOSE = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_enable,
    help="Log what each attempt did on stderr (URL, attempt, outcome, time, retry or not).",
)
