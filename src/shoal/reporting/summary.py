"""The summary printed when a run ends: plain text in two columns.

Plain text, not a rich table: it reads the same in a terminal and in a log file, and a
short job does not spend its time laying out a table.
"""

from __future__ import annotations

from shoal.reporting.statistics import Statistics
from shoal.reporting.units import format_bytes, format_duration


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def render_summary(stats: Statistics, *, title: str = "shoal summary", live: bool = False) -> str:
    """Two columns under a title: what was done, how it ended, how fast. ``live``: the
    snapshot may be of a run still going (``str(statistics)``), and says so."""
    table = _Rows()
    units = stats.unit + "s"
    took = format_duration(stats.elapsed_s)
    if live and not stats.finished:
        state = "stopping" if stats.interrupted else "paused" if stats.paused else "running"
        table.add_row("run", f"{state}, {took} so far")
        if stats.in_flight or stats.queued or stats.waiting_retry:
            table.add_row(
                "now",
                f"{stats.in_flight:,} in flight, {stats.queued:,} queued, "
                f"{stats.waiting_retry:,} waiting to be retried",
            )
    else:
        state = "interrupted" if stats.interrupted else "finished"
        table.add_row("run", f"{state} in {took}")
    table.add_row(
        units,
        f"{stats.done:,} this run: {stats.ok:,} ok, {stats.failed:,} failed"
        + (
            f"; {stats.retries:,} {'retry' if stats.retries == 1 else 'retries'}"
            if stats.retries
            else ""
        ),
    )
    if stats.skipped:
        table.add_row("resumed", f"{stats.skipped:,} already final from earlier runs")
    if stats.duplicates:
        table.add_row("duplicates", f"{stats.duplicates:,} skipped")
    links = stats.links
    if links.found:
        left_out = [
            f"{count:,} {label}"
            for count, label in (
                (links.duplicate, "seen before"),
                (links.out_of_scope, "out of scope"),
                (links.excluded, "excluded"),
                (links.too_deep, "too deep"),
                (links.over_budget, "over budget"),
                (links.invalid, "not http(s)"),
            )
            if count
        ]
        table.add_row(
            "links",
            f"{links.found:,} found, {links.admitted:,} new"
            + (f"; {', '.join(left_out)}" if left_out else ""),
        )
    if stats.total is not None and not stats.total_is_estimate:
        table.add_row(
            "job",
            f"{stats.total:,} {units}: {stats.job_ok:,} ok, {stats.job_failed:,} failed, "
            f"{max(0, stats.total - stats.job_ok - stats.job_failed):,} pending",
        )
    if stats.by_status:
        table.add_row(
            "status", ", ".join(f"{k}: {v:,}" for k, v in sorted(stats.by_status.items()))
        )
    if stats.by_error:
        table.add_row(
            "errors",
            ", ".join(f"{k}: {v:,}" for k, v in sorted(stats.by_error.items(), key=_by_count)),
        )
    lat = stats.latency
    table.add_row(
        "latency",
        f"p50 {_ms(lat.p50_ms)}, p90 {_ms(lat.p90_ms)}, p99 {_ms(lat.p99_ms)}, "
        f"max {_ms(lat.max_ms)}",
    )
    dns = stats.dns
    if dns.lookups or dns.cached or dns.coalesced:
        problems = [
            f"{count:,} {label}"
            for count, label in ((dns.not_found, "not found"), (dns.failed, "failed"))
            if count
        ]
        table.add_row(
            "dns",
            f"{dns.lookups:,} {'lookup' if dns.lookups == 1 else 'lookups'}"
            f" (p50 {_ms(dns.latency.p50_ms)}, max {_ms(dns.latency.max_ms)})"
            f", {dns.cached + dns.coalesced:,} answered from the cache"
            + (f"; {', '.join(problems)}" if problems else ""),
        )
    if stats.unit == "request":
        table.add_row(
            "throughput",
            f"{stats.requests_per_s:,.1f} req/s, {format_bytes(stats.bytes_per_s)}/s, "
            f"{format_bytes(stats.bytes)} in all",
        )
    else:  # a map's calls move no bytes of their own
        table.add_row("throughput", f"{stats.requests_per_s:,.1f} {units}/s")
    return table.render(title)


class _Rows:
    def __init__(self) -> None:
        self._rows: list[tuple[str, str]] = []

    def add_row(self, name: str, value: str) -> None:
        self._rows.append((name, value))

    def render(self, title: str) -> str:
        width = max(len(name) for name, _ in self._rows)
        lines = [title, *(f" {name:<{width}}  {value}" for name, value in self._rows)]
        return "\n".join(lines)


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])
