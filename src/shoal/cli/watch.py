"""``shoal status --watch [S]``: a job's status looked at again every S seconds, with the
rate between looks and an estimate of the time left, until the job is complete, no shoal
runs it, or Ctrl-C; and ``shoal status --store URL --job NAME``, a shared job's status.

Each look reads the journal (the parts' journals of a ``--processes`` job) or the shared
store afresh; the rate is what was finished between two looks, over the time between them,
so it is the job's pace, whichever workers made it."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable

import orjson

from shoal.cli.export import Look, look_at
from shoal.cli.notices import silence_stdout
from shoal.cli.run import EXIT_INTERRUPTED, EXIT_PIPE
from shoal.reporting.units import format_eta
from shoal.store.reader import JobAddress
from shoal.store.summary import JobSummary


class Pace:
    """The rate of finished requests between looks, and the time left it gives."""

    def __init__(self) -> None:
        self._first: tuple[float, int] | None = None
        self._last: tuple[float, int] | None = None
        #: Requests finished per second between the last two looks (``None`` after one).
        self.rate_per_s: float | None = None
        #: Requests finished per second since the first look (``None`` after one).
        self.average_per_s: float | None = None

    def update(self, now: float, finished: int) -> None:
        if self._first is None:
            self._first = (now, finished)
        else:
            self.rate_per_s = _rate(self._last or self._first, now, finished)
            self.average_per_s = _rate(self._first, now, finished)
        self._last = (now, finished)

    def eta_s(self, summary: JobSummary) -> float | None:
        """The seconds left at the average pace: 0 for a complete job; ``None`` while the
        total is unknown (the input is not read to its end) or nothing has moved."""
        if not summary.input_done:
            return None
        if summary.pending == 0:
            return 0.0
        if not self.average_per_s:
            return None
        return summary.pending / self.average_per_s

    def line(self, summary: JobSummary, *, last: bool = False) -> str:
        """``rate       12.5 requests/s (average 11.9/s since the watch began), ETA 0:42``
        (``last``: no look follows this one)."""
        unit = "items" if summary.mapped else "requests"
        eta = self.eta_s(summary)
        shown_eta = "--" if eta is None else format_eta(eta)
        if self.rate_per_s is None or self.average_per_s is None:
            known = "one look only" if last else "known at the next look"
            return f"rate       -- {unit}/s ({known}), ETA {shown_eta}"
        return (
            f"rate       {self.rate_per_s:,.1f} {unit}/s (average {self.average_per_s:,.1f}/s"
            f" since the watch began), ETA {shown_eta}"
        )


def _rate(since: tuple[float, int], now: float, finished: int) -> float:
    then, before = since
    return max(0, finished - before) / (now - then) if now > then else 0.0


def watch(look: Callable[[], Look], *, as_json: bool, every_s: float) -> None:
    """Print ``look()`` every ``every_s`` seconds, with the pace, until a look says the job
    ended. On a terminal the text is redrawn in place; elsewhere (a pipe, a log) each look
    is printed in turn, with ``--json`` one JSON object per line. Ctrl-C ends it with exit
    130, a closed stdout with exit 141, quietly."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(soft_wrap=True, emoji=False, highlight=False)
    in_place = console.is_terminal and not as_json
    pace = Pace()
    try:
        with contextlib.ExitStack() as stack:
            live = None
            if in_place:
                live = stack.enter_context(Live(console=console, auto_refresh=False))
            next_at = time.monotonic()
            while True:
                seen = look()
                now = time.monotonic()
                summary = seen.summary
                pace.update(now, summary.ok + summary.failed)
                if as_json:
                    fields = {
                        **seen.fields,
                        "rate_per_s": _rounded(pace.rate_per_s),
                        "average_per_s": _rounded(pace.average_per_s),
                        "eta_s": _rounded(pace.eta_s(summary)),
                    }
                    sys.stdout.buffer.write(orjson.dumps(fields) + b"\n")
                    sys.stdout.buffer.flush()
                else:
                    text = "\n".join(
                        [*seen.lines[:-1], pace.line(summary, last=seen.ended), seen.lines[-1]]
                    )
                    if live is not None:
                        live.update(Text(text), refresh=True)
                    else:
                        print(text + "\n", flush=True)
                if seen.ended:
                    return
                next_at = max(next_at + every_s, now)  # (a slow look does not pile up)
                time.sleep(next_at - now)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        silence_stdout()
        sys.exit(EXIT_PIPE)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def show_status(address: JobAddress, *, as_json: bool, every_s: float | None) -> None:
    """``shoal status``: the status of the job at ``address`` (a journal, a ``--processes``
    job's parts, or a shared store's job), once or (``every_s``) watched until it is
    complete or nothing runs it."""
    if every_s is not None:
        watch(lambda: look_at(address, watching=True), as_json=as_json, every_s=every_s)
        return
    seen = look_at(address, watching=False)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(seen.fields) + b"\n")
        sys.stdout.buffer.flush()
    else:
        print("\n".join(seen.lines), flush=True)
