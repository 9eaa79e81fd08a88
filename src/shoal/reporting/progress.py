"""A live progress line on stderr, redrawn from statistics snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from shoal.reporting.statistics import Statistics
from shoal.reporting.units import format_bytes, format_duration


class Progress:
    """Redraws a progress line every ``interval_s`` until cancelled."""

    def __init__(
        self,
        console: Console,
        read: Callable[[], Statistics],
        *,
        interval_s: float = 0.25,
    ) -> None:
        self._console = console
        self._read = read
        self._interval_s = interval_s
        self._rate = 0.0
        self._byte_rate = 0.0
        self._last: tuple[float, int, int] | None = None

    async def run(self) -> None:
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

    def _update_rates(self, stats: Statistics) -> None:
        now = time.monotonic()
        if self._last is not None:
            then, done, size = self._last
            span = now - then
            if span > 0:
                # About a two-second moving average; the first reading is taken whole.
                weight = min(1.0, span / 2.0) if self._rate else 1.0
                self._rate += weight * ((stats.done - done) / span - self._rate)
                self._byte_rate += weight * ((stats.bytes - size) / span - self._byte_rate)
        self._last = (now, stats.done, stats.bytes)

    def render(self, stats: Statistics) -> RenderableType:
        self._update_rates(stats)
        finished = stats.skipped + stats.done
        total = stats.total
        grid = Table.grid(padding=(0, 1))
        if total is not None:
            grid.add_column(width=30)
        grid.add_column()
        counts = Text()
        if total is not None:
            approx = "~" if stats.total_is_estimate else ""
            counts.append(f"{finished:,}/{approx}{total:,}", style="bold")
        else:
            counts.append(f"{finished:,} done", style="bold")
        counts.append("  ok ")
        counts.append(f"{stats.ok:,}", style="green")
        counts.append("  failed ")
        counts.append(f"{stats.failed:,}", style="red" if stats.failed else "")
        if stats.unit == "request":
            counts.append(f"  {self._rate:,.0f} req/s  {format_bytes(self._byte_rate)}/s")
        else:
            counts.append(f"  {self._rate:,.0f} {stats.unit}s/s")
        counts.append(f"  in flight {stats.in_flight:,}")
        if stats.waiting_retry:
            counts.append(f"  retrying {stats.waiting_retry:,}")
        remaining = stats.remaining
        if remaining is not None and self._rate > 0:
            counts.append(f"  ETA {format_duration(remaining / self._rate)}")
        if total is not None:
            bar = ProgressBar(total=max(total, 1), completed=min(finished, total), width=30)
            grid.add_row(bar, counts)
        else:
            grid.add_row(counts)
        return Group(grid)
