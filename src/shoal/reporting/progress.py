"""Progress on stderr, from statistics snapshots: a line redrawn in place on a terminal, and
one plain line every few seconds anywhere else (a log file, a pipe), as wget's log form.

Every count on the line is the whole job's (a resumed job's earlier runs included); what
this run did is the ``N this run`` field. The line is made to fit the terminal's width: the
fields that matter least go first.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from shoal.reporting.statistics import Statistics
from shoal.reporting.units import format_bytes, format_duration, format_eta

#: How often the line is redrawn on a terminal (seconds).
TERMINAL_INTERVAL_S = 0.25
#: How often a plain line is written when stderr is not a terminal (``--progress-interval``).
PLAIN_INTERVAL_S = 5.0
#: The bar's width on a terminal, at most and at least (narrower: no bar).
BAR_WIDTH = 30
_BAR_MIN = 10
#: Below this many per second (a run that has stopped moving), no ETA is given.
_STILL = 1e-3


@dataclass(frozen=True, slots=True)
class Field:
    """One part of the line, and how soon it is dropped when the line is too long (the
    highest ``drop`` first; 0: never)."""

    text: str
    drop: int
    style: str = ""


class Rates:
    """The job's pace (results and bytes per second), as a moving average of about two
    seconds between the snapshots it is given."""

    def __init__(self) -> None:
        self.per_s = 0.0
        self.bytes_per_s = 0.0
        self._last: tuple[float, int, int] | None = None

    def update(self, stats: Statistics, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        finished = job_finished(stats)
        if self._last is not None:
            then, done, size = self._last
            span = now - then
            if span > 0:
                # The first reading is taken whole.
                weight = min(1.0, span / 2.0) if self.per_s else 1.0
                self.per_s += weight * (max(0, finished - done) / span - self.per_s)
                self.bytes_per_s += weight * (max(0, stats.bytes - size) / span - self.bytes_per_s)
        self._last = (now, finished, stats.bytes)


def job_finished(stats: Statistics) -> int:
    """How many of the job's requests are final, whichever run finished them."""
    return max(stats.job_ok + stats.job_failed, stats.skipped + stats.done)


def eta_text(stats: Statistics, per_s: float) -> str:
    """``ETA 1:15``, ``paused``, or ``ETA --`` when there is no estimate."""
    if stats.paused:
        return "paused"
    remaining = stats.remaining
    if remaining is None or not math.isfinite(per_s) or per_s < _STILL:
        return "ETA --"
    return f"ETA {format_eta(remaining / per_s)}"


def fields(stats: Statistics, rates: Rates) -> list[Field]:
    """The parts of the line, in the order shown."""
    finished = job_finished(stats)
    ok = max(stats.job_ok, stats.ok)
    failed = max(stats.job_failed, stats.failed)
    total = stats.total
    if total is not None:
        approx = "~" if stats.total_is_estimate else ""
        counts = f"{finished:,}/{approx}{total:,}"
        if total > 0 and not stats.total_is_estimate:
            counts += f" {min(100, 100 * finished // total)}%"
    else:
        counts = f"{finished:,} done"
    shown = [
        Field(counts, 0, "bold"),
        Field(f"ok {ok:,}", 3, "green"),
        Field(f"failed {failed:,}", 2, "red" if failed else ""),
    ]
    if stats.workers:  # a shared job: other workers do some of it
        shown.append(Field(f"{stats.done:,} this run", 5))
    elif stats.skipped:  # a resumed job (its store's counts run a moment ahead of ``done``)
        shown.append(Field(f"{finished - stats.skipped:,} this run", 5))
    if stats.unit == "request":
        shown.append(Field(f"{rates.per_s:,.0f} req/s", 4))
        shown.append(Field(f"{format_bytes(rates.bytes_per_s)}/s", 7))
    else:
        shown.append(Field(f"{rates.per_s:,.0f} {stats.unit}s/s", 4))
    shown.append(Field(f"in flight {stats.in_flight:,}", 6))
    if stats.waiting_retry:
        shown.append(Field(f"retrying {stats.waiting_retry:,}", 6))
    eta = eta_text(stats, rates.per_s)
    shown.append(Field(eta, 0 if stats.paused else 1, "yellow" if stats.paused else ""))
    return shown


_GAP = "  "


def fit(shown: list[Field], width: int) -> list[Field]:
    """The fields that fit in ``width`` columns, dropping the least important first."""
    kept = list(shown)
    while len(kept) > 1 and _width(kept) > width:
        worst = max(kept, key=lambda f: (f.drop, kept.index(f)))
        if worst.drop == 0:
            break
        kept.remove(worst)
    return kept


def _width(shown: list[Field]) -> int:
    return sum(len(f.text) for f in shown) + len(_GAP) * (len(shown) - 1)


def plain_line(stats: Statistics, rates: Rates) -> str:
    """The line written to a log: every field, after the time the run has taken."""
    return f"shoal: [{format_duration(stats.elapsed_s)}] " + _GAP.join(
        f.text for f in fields(stats, rates)
    )


def terminal_line(stats: Statistics, rates: Rates, width: int) -> RenderableType:
    """The bar and the fields that fit in ``width`` columns (one short of the edge, so a
    terminal never wraps the line)."""
    room = max(1, width - 1)
    shown = fields(stats, rates)
    total = stats.total
    bar_width = 0
    if total is not None:
        kept = fit(shown, room - _BAR_MIN - 1)
        if _width(kept) + _BAR_MIN + 1 <= room:
            bar_width = min(BAR_WIDTH, room - _width(kept) - 1)
            shown = kept
        else:
            shown = fit(shown, room)
    else:
        shown = fit(shown, room)
    line = Text(no_wrap=True, overflow="crop")
    for index, part in enumerate(shown):
        if index:
            line.append(_GAP)
        line.append(part.text, style=part.style)
    if not bar_width:
        return line
    finished = job_finished(stats)
    assert total is not None
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=bar_width, no_wrap=True)
    grid.add_column(no_wrap=True)
    bar = ProgressBar(total=max(total, 1), completed=min(finished, total), width=bar_width)
    grid.add_row(bar, line)
    return grid


class Progress:
    """Shows the progress of ``read``'s snapshots on ``console`` until cancelled: redrawn in
    place every quarter second on a terminal; elsewhere one plain line (no colour, no
    carriage return) every ``plain_every_s`` seconds."""

    def __init__(
        self,
        console: Console,
        read: Callable[[], Statistics],
        *,
        plain_every_s: float = PLAIN_INTERVAL_S,
    ) -> None:
        self._console = console
        self._read = read
        self._plain = not console.is_terminal
        self._interval_s = plain_every_s if self._plain else TERMINAL_INTERVAL_S
        self._rates = Rates()

    async def run(self) -> None:
        if self._plain:
            await self._write_lines()
        else:
            await self._redraw()

    async def _write_lines(self) -> None:
        rates = self._rates
        rates.update(self._read())
        while True:
            await asyncio.sleep(self._interval_s)
            stats = self._read()
            rates.update(stats)
            line = plain_line(stats, rates)
            self._console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)

    async def _redraw(self) -> None:
        from rich.live import Live

        with Live(
            self.render(self._read()),
            console=self._console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            while True:
                await asyncio.sleep(self._interval_s)
                live.update(self.render(self._read()), refresh=True)

    def render(self, stats: Statistics) -> RenderableType:
        self._rates.update(stats)
        return terminal_line(stats, self._rates, self._console.width)
