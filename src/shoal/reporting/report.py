"""``shoal report``: one self-contained HTML page about a job, made from its journal alone
(or, for a job on a shared store, from what the database holds of it).

The page loads nothing: its style is inline, its charts are inline SVG (``charts``), and
it has no script and no link. Everything it shows that came from the journal — URLs, host
names, error messages, paths — is escaped, since a job's URLs and its servers' messages
may be anyone's text. And it says only what the journal holds, in an order fixed by the
journal's contents, never the time it was made: the same journal gives the same bytes.

The page is drawn from a :class:`ReportSource`: a journal's
:class:`~shoal.store.sqlite.reader.JournalReader`, or a job read ahead by any
:class:`~shoal.store.reader.JobReader` (a shared job's, from PostgreSQL in one snapshot,
is a :class:`SharedSource` and adds the job's name and its workers). The page's sections
are in :mod:`shoal.reporting.sections`.
"""

from __future__ import annotations

import os

from shoal.reporting.page import STYLE, escape
from shoal.reporting.sections import (
    INTERVALS,
    PERCENTILES,
    TOP_ERRORS,
    TOP_HOSTS,
    configuration_section,
    errors_section,
    hosts_section,
    latency_section,
    outcomes_section,
    outputs_section,
    state_section,
    throughput_section,
    timeline_interval,
    totals_section,
    workers_section,
)
from shoal.store.snapshot import ReportSource, SharedSource
from shoal.version import __version__

__all__ = [
    "INTERVALS",
    "PERCENTILES",
    "TOP_ERRORS",
    "TOP_HOSTS",
    "ReportSource",
    "SharedSource",
    "render_report",
    "timeline_interval",
]


def render_report(source: ReportSource) -> bytes:
    """The report of the job ``source`` reads, as UTF-8 HTML."""
    shared = source if isinstance(source, SharedSource) else None
    summary = source.summary()
    totals = source.totals()
    span = source.timeline_span()
    settings = source.settings()
    title = f"shoal report: {os.path.basename(summary.input) or 'a job'}"
    if shared is None:
        where = f"journal <code>{escape(os.path.abspath(source.path))}</code>"
        made = "from the job's journal alone, read-only: the same journal gives the same page"
    else:
        name, store = escape(shared.name), escape(shared.path)
        where = f"job <code>{name}</code> in the store <code>{store}</code>"
        made = (
            "from the job's store alone, read-only and in one snapshot: the same database"
            " contents give the same page"
        )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{where}</p>',
        state_section(summary, shared=shared is not None),
        *totals_section(summary, totals, span),
        *throughput_section(source, span, shared=shared is not None),
        *outcomes_section(summary, totals),
        *latency_section(totals),
        *hosts_section(source, summary.mapped),
        *errors_section(source, summary),
        *([] if shared is None else workers_section(shared.workers())),
        *outputs_section(source, shared, settings, totals),
        *configuration_section(settings, shared=shared is not None),
        f"<footer>Made by shoal {escape(__version__)} {made}.</footer>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts).encode()
