"""The report's charts: matplotlib figures drawn to inline SVG, the same bytes every time.

matplotlib comes with the ``report`` extra. No pyplot and no backend are chosen: a bare
:class:`~matplotlib.figure.Figure` draws itself with the SVG renderer, so nothing global
changes and no GUI is touched. An SVG is reproducible when its ids are salted with a
constant (``svg.hashsalt``), its metadata carry no date, and text is drawn as paths from
matplotlib's bundled font. Each chart's ids are then prefixed with its own name, so the
charts of one page never share an id, and the XML prolog and namespace declarations are
dropped: the SVG is meant for an HTML page, which needs neither and would only see URLs in
them.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from shoal.latency import bucket_range
from shoal.reporting.units import format_bytes

#: Colours by outcome and status class (also used by the page's tables).
OK_COLOUR = "#3a8f5c"
FAILED_COLOUR = "#c8443a"
CLASS_COLOURS = {
    "1": "#7f7f7f",
    "2": OK_COLOUR,
    "3": "#3b6ea8",
    "4": "#d88a2d",
    "5": FAILED_COLOUR,
}
NO_STATUS_COLOUR = "#555555"


def status_colour(status: int | None) -> str:
    """The colour of a status's class."""
    if status is None:
        return NO_STATUS_COLOUR
    return CLASS_COLOURS.get(str(status)[0], NO_STATUS_COLOUR)


#: (Typed loosely: matplotlib's own key type is newer than the oldest version supported.)
_STYLE: dict[Any, Any] = {
    "svg.hashsalt": "shoal-report",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "axes.axisbelow": True,
    "path.simplify": True,
}
#: Every metadata key matplotlib writes unless told not to (a date, its name and URL).
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
#: Histogram buckets merged into one bar (40 a factor of e: bars about 10% wide).
_MERGED_BUCKETS = 4


def throughput_svg(start: int, seconds: int, intervals: Sequence[tuple[int, int, int, int]]) -> str:
    """Requests per second (ok and failed, stacked) and body bytes per second over time.

    ``intervals``: ``(second, ok, failed, bytes)`` of consecutive ``seconds``-long
    intervals from ``start``; missing ones had nothing committed.
    """
    with matplotlib.rc_context(_STYLE):
        return _svg(throughput_figure(start, seconds, intervals), "throughput")


def throughput_figure(
    start: int, seconds: int, intervals: Sequence[tuple[int, int, int, int]]
) -> Figure:
    """The figure :func:`throughput_svg` draws: both value axes from 0, the legend above
    the plot."""
    last = max(second for second, *_ in intervals)
    count = (last - start) // seconds + 1
    ok, failed, size = [0.0] * count, [0.0] * count, [0.0] * count
    for second, n_ok, n_failed, n_bytes in intervals:
        index = (second - start) // seconds
        ok[index], failed[index], size[index] = (
            n_ok / seconds,
            n_failed / seconds,
            n_bytes / seconds,
        )
    scale, unit = _time_unit((last - start) + seconds)
    edges = [index * seconds / scale for index in range(count + 1)]
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(9.0, 4.2), layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        both = [a + b for a, b in zip(ok, failed, strict=True)]
        top.stairs(ok, edges, fill=True, color=OK_COLOUR, label="ok")
        top.stairs(both, edges, baseline=ok, fill=True, color=FAILED_COLOUR, label="failed")
        top.set_ylabel("requests / s")
        top.set_ylim(bottom=0)
        # Above the plot, never over the bars (the layout leaves it room).
        handles, names = top.get_legend_handles_labels()
        figure.legend(handles, names, loc="outside upper right", frameon=False, ncols=2)
        bottom.stairs(size, edges, fill=True, color="#5b7fb0")
        bottom.set_ylabel("body bytes / s")
        bottom.set_ylim(bottom=0)
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda value, _: format_bytes(value)))
        bottom.set_xlabel(f"{unit} since the first commit ({_plural(seconds, 'second')} each)")
        bottom.set_xlim(0, edges[-1])
        return figure


def bars_svg(
    name: str, labels: Sequence[str], counts: Sequence[int], colours: Sequence[str]
) -> str:
    """Horizontal bars, the first label on top, each bar's count at its end."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(9.0, 0.6 + 0.28 * len(labels)), layout="constrained")
        axes = figure.subplots()
        positions = range(len(labels))
        axes.barh(positions, counts, color=colours, height=0.7)
        axes.set_yticks(positions, labels)
        axes.invert_yaxis()
        axes.grid(axis="y", visible=False)
        axes.set_xlim(0, max(counts) * 1.12)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        for position, count in zip(positions, counts, strict=True):
            axes.annotate(
                f"{count:,}",
                (count, position),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
            )
        return _svg(figure, name)


def latency_svg(
    total: Mapping[int, int], first_byte: Mapping[int, int], marks: Sequence[tuple[str, float]]
) -> str:
    """Histograms of the requests' durations and times to first byte (log scale), with
    the durations' percentiles ``marks`` as ``(label, ms)`` lines."""
    with matplotlib.rc_context(_STYLE):
        return _svg(latency_figure(total, first_byte, marks), "latency")


#: The height of a row of percentile labels (points): each label has a row of its own.
_LABEL_ROW = 12


def latency_figure(
    total: Mapping[int, int], first_byte: Mapping[int, int], marks: Sequence[tuple[str, float]]
) -> Figure:
    """The figure :func:`latency_svg` draws. The legend sits above the plot, and each
    percentile's label a row below the one before, so that close percentiles (p90 and p99
    of a narrow spread) never print over each other."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(9.0, 3.4), layout="constrained")
        axes = figure.subplots()
        _histogram(axes, total, "whole request", "#5b7fb0", fill=True)
        if first_byte:
            _histogram(axes, first_byte, "first byte", "#222222", fill=False)
        axes.set_xscale("log")
        axes.set_ylim(bottom=0)
        axes.set_xlabel("milliseconds (log scale)")
        axes.set_ylabel("requests")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        shown = [(label, ms) for label, ms in marks if ms > 0]
        for row, (label, ms) in enumerate(shown):
            axes.axvline(ms, color=FAILED_COLOUR, linewidth=0.8, linestyle="--")
            axes.annotate(
                label,
                (ms, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -2 - _LABEL_ROW * row),
                textcoords="offset points",
                va="top",
                color=FAILED_COLOUR,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
            )
        if shown:  # the labels' rows, below the tallest bar
            top = axes.get_ylim()[1]
            axes.set_ylim(0, top * (1 + 0.06 * len(shown)))
        handles, names = axes.get_legend_handles_labels()
        figure.legend(handles, names, loc="outside upper left", frameon=False, ncols=2)
        return figure


def _histogram(axes: Axes, buckets: Mapping[int, int], label: str, colour: str, fill: bool) -> None:
    merged: dict[int, int] = {}
    for bucket, count in buckets.items():
        merged[bucket // _MERGED_BUCKETS] = merged.get(bucket // _MERGED_BUCKETS, 0) + count
    low, high = min(merged), max(merged)
    counts = [merged.get(index, 0) for index in range(low, high + 1)]
    edges = [bucket_range(index * _MERGED_BUCKETS)[0] for index in range(low, high + 2)]
    edges[0] = max(edges[0], 0.001)  # the first bucket starts at 0: not on a log axis
    axes.stairs(counts, edges, fill=fill, color=colour, label=label, alpha=0.85 if fill else 1.0)


def _time_unit(span_s: int) -> tuple[float, str]:
    if span_s <= 3 * 60:
        return 1.0, "seconds"
    if span_s <= 3 * 3600:
        return 60.0, "minutes"
    if span_s <= 3 * 86400:
        return 3600.0, "hours"
    return 86400.0, "days"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


_ID_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')
_NAMESPACES = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_SIZE = re.compile(r'\s+(?:width|height)="[\d.]+pt"')


def _svg(figure: Figure, name: str) -> str:
    """The figure as an SVG element for an HTML page (see the module's note)."""
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata=_NO_METADATA)
    text = out.getvalue()
    text = text[text.index("<svg") :]
    head, _, body = text.partition(">")
    head = _SIZE.sub("", _NAMESPACES.sub("", head))
    text = f'{head} role="img" aria-label="{name} chart">{body}'
    return _ID_REFERENCE.sub(lambda match: f"{match[1]}{name}-{match[2]}", text).strip()


def nice_interval(span_s: int, most: int) -> int:
    """The shortest round interval (1 s, 2 s, 5 s, … 1 day, then whole days) that cuts
    ``span_s`` seconds into at most ``most`` intervals."""
    for seconds in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800):
        if math.ceil(span_s / seconds) <= most:
            return seconds
    for seconds in (21600, 43200, 86400):
        if math.ceil(span_s / seconds) <= most:
            return seconds
    return 86400 * math.ceil(span_s / (86400 * most))
