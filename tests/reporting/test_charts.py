"""The report's charts laid out for reading: value axes from 0, legends beside the data
rather than over it, and percentile labels that never print over each other."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox

from shoal.latency import LatencyHistogram
from shoal.reporting.charts import latency_figure, throughput_figure


def _drawn(figure: Figure) -> RendererAgg:
    """Lay the figure out as it is drawn; the renderer to measure it with."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # type: ignore[no-untyped-call]
    renderer: RendererAgg = canvas.get_renderer()  # type: ignore[no-untyped-call]
    return renderer


def _overlap(one: Bbox, other: Bbox) -> bool:
    return bool(one.overlaps(other))


def test_the_throughput_legend_sits_above_the_bars_and_axes_start_at_0() -> None:
    # A busy run: the bars reach the top right corner, where a legend inside would go.
    intervals = [(second, 50 + second, 5, 1000 * second) for second in range(100, 160)]
    figure = throughput_figure(100, 1, intervals)
    renderer = _drawn(figure)
    top, bottom = figure.axes
    [legend] = figure.legends
    assert not _overlap(legend.get_window_extent(renderer), top.get_window_extent(renderer))
    assert top.get_ylim()[0] == 0 and bottom.get_ylim()[0] == 0
    assert bottom.get_xlim()[0] == 0


def test_close_percentiles_have_labels_apart() -> None:
    histogram = LatencyHistogram()
    for ms in range(1, 2000):
        histogram.add(50 + ms / 100)  # a narrow spread: p90, p95 and p99 almost together
    marks = [("p50", 60.0), ("p90", 67.9), ("p95", 68.9), ("p99", 69.8), ("p99.9", 69.98)]
    figure = latency_figure(histogram.buckets(), {}, marks)
    renderer = _drawn(figure)
    (axes,) = figure.axes
    labels = [child for child in axes.get_children() if isinstance(child, Annotation)]
    assert sorted(label.get_text() for label in labels) == sorted(label for label, _ in marks)
    boxes = [label.get_window_extent(renderer) for label in labels]
    for index, box in enumerate(boxes):
        for other in boxes[index + 1 :]:
            assert not _overlap(box, other), (box, other)
    [legend] = figure.legends
    assert not _overlap(legend.get_window_extent(renderer), axes.get_window_extent(renderer))
    assert axes.get_ylim()[0] == 0
