"""The sections of ``shoal report``'s page, each drawn from what the job's
:class:`~shoal.store.snapshot.ReportSource` gives (see :mod:`shoal.reporting.report`)."""

from __future__ import annotations

import os
from typing import Any

from shoal.config import OPTION_NAMES, SIZE_SETTINGS, option_name, size_text
from shoal.reporting import charts
from shoal.reporting.page import (
    cut,
    escape,
    flatten,
    ms,
    pairs,
    plural,
    status_text,
    table,
    utc,
    value_text,
)
from shoal.reporting.units import format_bytes, format_duration
from shoal.store.snapshot import ReportSource, SharedSource
from shoal.store.summary import JobSummary, RecordTotals, TimelineSpan, WorkerRow

#: Rows of the top hosts and of the grouped errors.
TOP_HOSTS = 25
TOP_ERRORS = 25
#: The throughput chart's intervals at most.
INTERVALS = 240
#: Percentiles of the latency table.
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999))


def timeline_interval(span: TimelineSpan) -> int:
    """The throughput chart's interval, in seconds, for a timeline over ``span`` (a source
    read ahead reads its timeline in these)."""
    return charts.nice_interval(span.last - span.first + 1, INTERVALS)


# -- the sections --------------------------------------------------------------------------------


def state_section(summary: JobSummary, *, shared: bool) -> str:
    if summary.input_done and summary.pending == 0:
        return '<p class="state finished">Finished: every request of the job is final.</p>'
    reasons = []
    if summary.pending:
        reasons.append(f"{summary.pending:,} {plural(summary.pending, 'request')} pending")
    if not summary.input_done:
        reasons.append(f"the input read up to line {summary.lines_read:,} only")
    if shared:
        after = (
            ". The job was interrupted or is still running; any worker (shoal worker) resumes"
            " it. This page shows what the store held when it was read.</p>"
        )
    else:
        after = (
            ". The job was interrupted or is still running; running the same command again"
            " resumes it. This page shows what the journal held when it was read.</p>"
        )
    return '<p class="state incomplete">Incomplete: ' + escape(" and ".join(reasons)) + after


def totals_section(
    summary: JobSummary, totals: RecordTotals, span: TimelineSpan | None
) -> list[str]:
    read = "read to the end" if summary.input_done else f"{summary.lines_read:,} lines read so far"
    rows = [
        ("input", f"{summary.input} ({read})"),
        ("requests", f"{summary.admitted:,} admitted"),
        ("ok", f"{summary.ok:,}"),
        ("failed", f"{summary.failed:,}"),
        ("pending", f"{summary.pending:,}"),
        (
            "attempts",
            f"{totals.attempts:,} ({totals.retries:,}"
            f" {plural(totals.retries, 'retry', 'retries')})",
        ),
        ("redirects followed", f"{totals.redirects:,}"),
        ("body bytes", f"{format_bytes(totals.bytes)} ({totals.bytes:,} bytes)"),
    ]
    if span is not None:
        seconds = span.last - span.first + 1
        what = "commit" if span.source == "journal" else "request ended"
        rows += [
            (f"first {what}", utc(span.first)),
            (f"last {what}", utc(span.last)),
            ("span", f"{format_duration(seconds)} ({seconds:,} s, pauses included)"),
            ("mean rate", f"{(span.ok + span.failed) / seconds:,.1f} requests/s"),
        ]
    return ["<h2>Totals</h2>", pairs(rows)]


def throughput_section(
    source: ReportSource, span: TimelineSpan | None, *, shared: bool
) -> list[str]:
    out = ["<h2>Throughput over time</h2>"]
    if span is None:
        return [*out, "<p>No final record has a time yet: nothing to draw.</p>"]
    seconds = timeline_interval(span)
    intervals = source.timeline(span, seconds)
    if shared:
        source_text = (
            "the job's timeline: what each commit made final, by the second it committed,"
            " every worker's summed"
        )
    elif span.source == "journal":
        source_text = (
            "the journal's timeline: what each commit made final, by the second it committed"
        )
    else:
        source_text = (
            "the records' own times, each counted when its last attempt ended (this journal"
            " has no timeline for some of its records: it was begun by an earlier shoal)"
        )
    drawn = [(i.start, i.ok, i.failed, i.bytes) for i in intervals]
    return [
        *out,
        charts.throughput_svg(span.first, seconds, drawn),
        f'<p class="note">From {escape(source_text)}; {seconds:,} s intervals.</p>',
    ]


def outcomes_section(summary: JobSummary, totals: RecordTotals) -> list[str]:
    out = ["<h2>Statuses and errors</h2>"]
    records = totals.records or 1
    if totals.statuses:
        labels = [status_text(code) for code in totals.statuses]
        counts = list(totals.statuses.values())
        colours = [charts.status_colour(code) for code in totals.statuses]
        out.append(charts.bars_svg("statuses", labels, counts, colours))
        out.append(
            table(
                ("status", "records", "share"),
                [
                    (label, f"{count:,}", f"{100 * count / records:.1f}%")
                    for label, count in zip(labels, counts, strict=True)
                ],
                numeric=(1, 2),
            )
        )
    else:
        out.append("<p>No final record yet.</p>")
    if summary.by_error:
        kinds = sorted(summary.by_error.items(), key=lambda item: (-item[1], item[0]))
        out.append("<p><strong>Failures by error kind</strong></p>")
        out.append(
            charts.bars_svg(
                "errors",
                [kind for kind, _ in kinds],
                [count for _, count in kinds],
                [charts.FAILED_COLOUR] * len(kinds),
            )
        )
        out.append(
            table(
                ("error kind", "failures", "share of records"),
                [(kind, f"{n:,}", f"{100 * n / records:.1f}%") for kind, n in kinds],
                numeric=(1, 2),
            )
        )
    else:
        out.append("<p>No request failed.</p>")
    return out


def latency_section(totals: RecordTotals) -> list[str]:
    out = ["<h2>Latency</h2>"]
    total, first = totals.latency, totals.first_byte
    if not total.count:
        return [*out, "<p>No request made an attempt yet.</p>"]
    heads = ("", "requests", *(name for name, _ in PERCENTILES), "max")
    rows = [
        (
            label,
            f"{histogram.count:,}",
            *(ms(histogram.percentile(fraction)) for _, fraction in PERCENTILES),
            ms(histogram.max_ms),
        )
        for label, histogram in (("whole request", total), ("first byte", first))
        if histogram.count
    ]
    marks = [
        (name, value)
        for name, fraction in PERCENTILES
        if name in ("p50", "p90", "p99") and (value := total.percentile(fraction)) is not None
    ]
    return [
        *out,
        table(heads, rows, numeric=range(1, len(heads))),
        charts.latency_svg(total.buckets(), first.buckets(), marks),
        '<p class="note">The last attempt of each final request: from its start to the end'
        " of its body, and to its response's headers. Percentiles come from a log-bucketed"
        " histogram and are within about 2.5%.</p>",
    ]


def hosts_section(source: ReportSource, mapped: bool) -> list[str]:
    """The top hosts' table, or for a map the top groups'."""
    top = source.hosts(TOP_HOSTS)
    word, by = ("group", "the items' groups") if mapped else ("host", "the requests' URLs")
    out = [f"<h2>Top {word}s</h2>"]
    if not top.rows:
        return [*out, "<p>No final record yet.</p>"]
    rows = [
        (
            f"(no {word})" if row.host is None else row.host,
            f"{row.requests:,}",
            f"{row.requests - row.failed:,}",
            f"{row.failed:,}",
            f"{100 * row.failed / row.requests:.1f}%",
            format_bytes(row.bytes),
            ms(row.mean_ms),
        )
        for row in top.rows
    ]
    shown = f"; the {len(top.rows):,} with the most records" if top.groups > len(top.rows) else ""
    return [
        *out,
        f"<p>{top.groups:,} {plural(top.groups, word)} in all, by {by}{shown}.</p>",
        table(
            (word, "records", "ok", "failed", "failed share", "body bytes", "mean latency"),
            rows,
            numeric=range(1, 7),
            text=(0,),
        ),
    ]


def errors_section(source: ReportSource, summary: JobSummary) -> list[str]:
    out = ["<h2>Errors, grouped</h2>"]
    if not summary.failed:
        return [*out, f"<p>No {'item' if summary.mapped else 'request'} failed.</p>"]
    top = source.error_groups(TOP_ERRORS)
    shown = f"; the {len(top.rows):,} largest" if top.groups > len(top.rows) else ""
    return [
        *out,
        f"<p>Failures with the same kind and message: {top.groups:,}"
        f" {plural(top.groups, 'group')}{shown}.</p>",
        table(
            ("kind", "message", "failures", "first key" if summary.mapped else "first URL"),
            [
                (group.kind, cut(group.message), f"{group.count:,}", cut(group.example_url))
                for group in top.rows
            ],
            numeric=(2,),
            text=(1, 3),
        ),
    ]


def workers_section(workers: list[WorkerRow]) -> list[str]:
    """A shared job's workers: each one's final records, and whether it stopped."""
    out = ["<h2>Workers</h2>"]
    if not workers:
        return [*out, "<p>No worker has joined the job yet.</p>"]
    stopped = sum(worker.stopped for worker in workers)
    rows = [
        (
            worker.worker,
            worker.machine,
            f"{worker.ok + worker.failed:,}",
            f"{worker.ok:,}",
            f"{worker.failed:,}",
            "stopped" if worker.stopped else "not stopped (running, or killed)",
        )
        for worker in workers
    ]
    return [
        *out,
        f"<p>{len(workers):,} {plural(len(workers), 'worker')} in all, in the order they started;"
        f" {stopped:,} stopped.</p>",
        table(
            ("worker", "machine", "records", "ok", "failed", "state"),
            rows,
            numeric=(2, 3, 4),
            text=(0, 1),
        ),
        '<p class="note">The records each worker made final. A worker that is not stopped'
        " is running, or ended without stopping (killed): its hosts are taken over once its"
        " leases expire.</p>",
    ]


def outputs_section(
    source: ReportSource,
    shared: SharedSource | None,
    settings: dict[str, Any] | None,
    totals: RecordTotals,
) -> list[str]:
    out = ["<h2>Outputs</h2>"]
    positions = source.positions()
    rows: list[tuple[str, str, str]] = []
    output = None if settings is None else settings.get("output")
    if shared is not None and output and output != "-":
        rows.append(("records (JSON lines)", str(output), "by the run that created the job"))
    elif "jsonl" in positions:
        where = str(output) if output else "the output file"
        rows.append(("records (JSON lines)", where, f"{format_bytes(positions['jsonl'])} written"))
    elif "stream" in positions or output == "-":
        rows.append(("records (JSON lines)", "standard output", ""))
    bodies = None if settings is None else settings.get("save_bodies")
    if bodies or totals.bodies:
        rows.append(
            (
                "response bodies",
                str(bodies or "a --save-bodies folder"),
                f"{totals.bodies:,} {plural(totals.bodies, 'record')} with a body,"
                f" {format_bytes(totals.body_bytes)}",
            )
        )
    prefix = None if settings is None else settings.get("warc")
    folder = os.path.dirname(str(prefix)) if prefix else ""
    for filename, (count, end) in totals.warc_files.items():
        rows.append(
            (
                "web archive",
                os.path.join(folder, filename),
                f"{count:,} {plural(count, 'response')}, {format_bytes(end)} up to the last",
            )
        )
    if prefix:
        rows.append(("web archive index (CDXJ)", f"{prefix}.cdxj", ""))
    if shared is None:
        rows.append(("journal", os.path.abspath(source.path), ""))
        kept = "the journal"
    else:
        rows.append(("job", f"{shared.name} in {shared.path}", ""))
        kept = "the job's settings"
    return [
        *out,
        table(("what", "where", ""), rows, text=(1,)),
        f'<p class="note">As {kept} recorded them; the files may have moved since.</p>',
    ]


def _setting_row(name: str, value: Any) -> tuple[str, str]:
    """A kept setting as the command line says it (``limits.max_bytes 52428800`` ->
    ``--max-bytes 50 MiB``); one no option sets (or a per-host override's) keeps its name."""
    parts = name.split(".")
    leaf = parts[-1]
    if len(parts) > 2 or leaf not in OPTION_NAMES:
        return name, value_text(value)
    if leaf in SIZE_SETTINGS and isinstance(value, int) and not isinstance(value, bool):
        return option_name(leaf), size_text(value)
    return option_name(leaf), value_text(value)


def configuration_section(settings: dict[str, Any] | None, *, shared: bool) -> list[str]:
    out = ["<h2>Configuration</h2>"]
    if settings is None:
        if shared:
            return [*out, "<p>Not recorded yet: no worker has started on the job.</p>"]
        return [*out, "<p>Not recorded: this journal's runs were made by an earlier shoal.</p>"]
    rows = [_setting_row(name, value) for name, value in flatten("", settings)]
    if shared:
        whose = "The job's settings, as its first worker kept them; every worker applies them"
    else:
        whose = "The latest run's settings"
    return [
        *out,
        f"<p>{whose} (header values and proxy credentials are not kept).</p>",
        pairs(rows, text=True),
    ]
